package service

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"

	_ "image/gif" // staff may upload GIFs; WeChat gets them as JPEG
	_ "image/png" // decoded to read sizes and to convert

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // nor does WeChat take WebP

	"careloop/model"
)

// What WeChat takes for articles (WECHAT.md): in-article images JPG or PNG
// under 1 MB; the cover as thumb material, JPG of at most 64 KB.
const (
	MaxMediaUpload  = 10 << 20
	wxInlineMax     = 1 << 20
	wxThumbMax      = 64 << 10
	wxInlineMaxSide = 1600
	wxThumbSide     = 360
)

// ErrBadMedia refuses an upload that is not an image careloop can read.
var ErrBadMedia = model.NewError(model.KindInvalid, "invalid_image", "图片须为 JPG、PNG、GIF 或 WebP 格式，且不超过 10MB")

// imageInfo decodes data's header: its MIME type and size.
func imageInfo(data []byte) (mime string, w, h int, err error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return "", 0, 0, ErrBadMedia
	}
	switch format {
	case "jpeg", "png", "gif", "webp":
		return "image/" + format, cfg.Width, cfg.Height, nil
	}
	return "", 0, 0, ErrBadMedia
}

// inlineForWeChat returns data as WeChat's media/uploadimg takes it: a JPG
// or PNG under 1 MB is sent as it is; anything else (GIF, WebP, too large)
// becomes a JPEG, scaled down until it fits.
func inlineForWeChat(data []byte) ([]byte, string, error) {
	if len(data) < wxInlineMax {
		switch http.DetectContentType(data) {
		case "image/jpeg":
			return data, "image.jpg", nil
		case "image/png":
			return data, "image.png", nil
		}
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, "", ErrBadMedia
	}
	out, err := jpegUnder(img, wxInlineMaxSide, wxInlineMax-1)
	return out, "image.jpg", err
}

// thumbForWeChat makes the cover's thumb material: a JPEG of at most 64 KB.
func thumbForWeChat(data []byte) ([]byte, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, ErrBadMedia
	}
	return jpegUnder(img, wxThumbSide, wxThumbMax)
}

// jpegUnder encodes img as a JPEG whose longer side is at most side pixels
// and whose size is at most limit bytes: lowering the quality first, then
// the size.
func jpegUnder(img image.Image, side, limit int) ([]byte, error) {
	for {
		scaled := fit(img, side)
		for _, q := range []int{85, 70, 55, 40} {
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, scaled, &jpeg.Options{Quality: q}); err != nil {
				return nil, err
			}
			if buf.Len() <= limit {
				return buf.Bytes(), nil
			}
		}
		if side <= 64 {
			return nil, ErrBadMedia
		}
		side = side * 3 / 4
	}
}

// fit scales img down so that its longer side is at most side, on white
// (a JPEG has no transparency).
func fit(img image.Image, side int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > side || h > side {
		if w >= h {
			w, h = side, max(1, h*side/w)
		} else {
			w, h = max(1, w*side/h), side
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, b, draw.Over, nil)
	return dst
}
