package model

import (
	_ "embed"
	"strings"
	"sync"
	"time"
)

// IDCard is a checked 18-digit resident identity number (居民身份证号码,
// GB 11643): region (GB/T 2260), birth date, sequence (odd for men), check
// digit.
type IDCard struct {
	Number string // 18 characters, a final "x" written as "X"
	Birth  time.Time
	Gender string // male or female
	Region string // the first six digits
}

// ErrBadIDCard is an ID card number that is not one.
var ErrBadIDCard = NewError(KindRule, "invalid_id_card", "身份证号不正确：应为 18 位，出生日期与校验码须有效")

var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const idCheckDigits = "10X98765432"

// ParseIDCard checks s as an 18-digit ID card number: digits, a valid birth
// date not in the future (now) nor before 1900, and the GB 11643 check digit.
func ParseIDCard(s string, now time.Time) (IDCard, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) != 18 {
		return IDCard{}, ErrBadIDCard
	}
	sum := 0
	for i := 0; i < 17; i++ {
		if s[i] < '0' || s[i] > '9' {
			return IDCard{}, ErrBadIDCard
		}
		sum += int(s[i]-'0') * idWeights[i]
	}
	if s[17] != idCheckDigits[sum%11] {
		return IDCard{}, ErrBadIDCard
	}
	birth, err := time.Parse("20060102", s[6:14])
	if err != nil || birth.Year() < 1900 || DateString(birth) > now.In(Shanghai).Format(time.DateOnly) {
		return IDCard{}, ErrBadIDCard
	}
	gender := "female"
	if (s[16]-'0')%2 == 1 {
		gender = "male"
	}
	return IDCard{Number: s, Birth: birth, Gender: gender, Region: s[:6]}, nil
}

// MaskIDCard shows the first four and last four characters:
// 1101**********1234.
func MaskIDCard(s string) string {
	if len(s) != 18 {
		return strings.Repeat("*", len(s))
	}
	return s[:4] + strings.Repeat("*", 10) + s[14:]
}

//go:embed regions.tsv
var regionsTSV string

var (
	regionsOnce sync.Once
	regions     map[string]string
)

func loadRegions() {
	regions = map[string]string{}
	for _, line := range strings.Split(regionsTSV, "\n") {
		code, name, ok := strings.Cut(line, "\t")
		if ok && !strings.HasPrefix(code, "#") {
			regions[code] = name
		}
	}
}

// RegionName names a GB/T 2260 code (two, four or six digits) as people
// write it — province, city, county: 110101 is 北京市东城区. A six-digit
// code retired since (ID cards keep the code of where they were issued)
// falls back to its city and province. "" when nothing is known.
func RegionName(code string) string {
	regionsOnce.Do(loadRegions)
	if len(code) < 2 {
		return ""
	}
	var parts []string
	for _, n := range []int{2, 4, 6} {
		if len(code) < n {
			break
		}
		name, ok := regions[code[:n]]
		if !ok || name == "市辖区" || name == "县" || name == "省直辖县级行政区划" || name == "自治区直辖县级行政区划" {
			continue
		}
		parts = append(parts, name)
	}
	return strings.Join(parts, "")
}

// ValidRegion reports whether code is a known six-digit county, city or
// province code.
func ValidRegion(code string) bool {
	regionsOnce.Do(loadRegions)
	_, ok := regions[code]
	return ok && len(code) == 6
}
