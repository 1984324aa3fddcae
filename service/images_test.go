package service

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

// A 12×5 PNG, as bytes: this test does not import image/png, so it fails
// when the service does not register the PNG decoder itself.
const tinyPNG = "iVBORw0KGgoAAAANSUhEUgAAAAwAAAAFCAIAAAD+GJp4AAAAMklEQVR4nGNgYOcTlVHWMrSwd/MNiU7KLCiva+2ZPGvhivXb9h45fenmg+fvvjIMQkUADo5WIzX0oEgAAAAASUVORK5CYII="

// The formats staff upload are read, and what WeChat gets fits its rules:
// a PNG goes to uploadimg as it is, a large picture's thumb is a JPEG of
// at most 64 KB.
func TestImagesForWeChat(t *testing.T) {
	raw, _ := base64.StdEncoding.DecodeString(tinyPNG)
	mime, w, h, err := imageInfo(raw)
	if err != nil || mime != "image/png" || w != 12 || h != 5 {
		t.Fatalf("PNG info: %q %dx%d %v", mime, w, h, err)
	}
	if data, name, err := inlineForWeChat(raw); err != nil || name != "image.png" || !bytes.Equal(data, raw) {
		t.Fatalf("a small PNG is not sent as it is: %s %v", name, err)
	}
	if thumb, err := thumbForWeChat(raw); err != nil || mimeOf(thumb) != "image/jpeg" {
		t.Fatalf("thumb of a PNG: %v", err)
	}
	img := image.NewRGBA(image.Rect(0, 0, 1600, 700))
	for y := 0; y < 700; y++ {
		for x := 0; x < 1600; x++ {
			img.Set(x, y, color.RGBA{uint8(x*y%251 + x%7), uint8(y * 3), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	thumb, err := thumbForWeChat(b.Bytes())
	if err != nil || len(thumb) > 64<<10 {
		t.Fatalf("thumb: %d bytes, %v", len(thumb), err)
	}
	if mime, w, _, _ := imageInfo(thumb); mime != "image/jpeg" || w > wxThumbSide {
		t.Fatalf("thumb is %s, %d wide", mime, w)
	}
	if _, _, _, err := imageInfo([]byte("%PDF-1.4")); err == nil {
		t.Fatal("a PDF passed as an image")
	}
}

func mimeOf(b []byte) string {
	mime, _, _, _ := imageInfo(b)
	return mime
}
