package store

import (
	"context"
	"fmt"
	"strconv"
	"testing"
)

// BenchmarkAcceptList10k: one update of a 10,000-image list where every
// image is known (the steady state of a big subscription), and the
// `clr-image -l` query on the result.
func BenchmarkAcceptList10k(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	mustSub(b, s, "big", NewImagesAccept)
	ims := make([]ImageInstance, 10000)
	for i := range ims {
		ims[i] = img(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), strconv.Itoa(i))
		ims[i].Extra = []byte(`{"ad:mpuri":"https://appdb.example.org/store/vm/image/x:1/"}`)
	}
	l := list("0", 0)
	l.Raw = make([]byte, 8<<20)
	b.Run("FirstImport", func(b *testing.B) {
		for b.Loop() {
			s, _ := openTemp(b)
			mustSub(b, s, "big", NewImagesAccept)
			mustAccept(b, s, "big", l, NewImagesAccept, ims...)
		}
	})
	mustAccept(b, s, "big", l, NewImagesAccept, ims...)
	// Each update changes 1% of the images.
	b.Run("AcceptList", func(b *testing.B) {
		v := 0
		for b.Loop() {
			v++
			for i := 0; i < len(ims); i += 100 {
				ims[(i+v)%len(ims)].SHA512 = img("", fmt.Sprint(v, i)).SHA512
			}
			l := list(strconv.Itoa(v), v)
			l.Raw = make([]byte, 8<<20)
			if _, err := s.AcceptList(ctx, "big", l, ims, opts(NewImagesAccept)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListImages", func(b *testing.B) {
		for b.Loop() {
			imgs, err := s.ListImages(ctx, ImageFilter{})
			if err != nil || len(imgs) != len(ims) {
				b.Fatal(len(imgs), err)
			}
		}
	})
}
