package platform

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// fuzzBody has a field of each kind that request bodies have.
type fuzzBody struct {
	Name       string   `json:"name"`
	Price      *int64   `json:"price"`
	ProductIDs []string `json:"product_ids"`
	Done       bool     `json:"done"`
}

// A body that Decode or DecodeOneOrMany accepts was declared JSON, holds
// only integers that JavaScript reads exactly, and means what encoding/json
// makes of it; re-encoded, it decodes to the same value. Nothing panics.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		var one fuzzBody
		if Decode(request(contentType, body), &one) == nil {
			sameAsEncodingJSON(t, body, one)
		}
		many, err := DecodeOneOrMany[fuzzBody](request(contentType, body), 3)
		if err != nil {
			return
		}
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
			t.Fatalf("Content-Type %q accepted", contentType)
		}
		if len(many) == 0 || len(many) > 3 {
			t.Fatalf("%d items accepted, want 1 to 3", len(many))
		}
		for _, b := range many {
			if b.Price != nil && (*b.Price > MaxInt || *b.Price < -MaxInt) {
				t.Fatalf("price %d accepted", *b.Price)
			}
		}
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
			sameAsEncodingJSON(t, body, many)
		}
	})
}

func request(contentType string, body []byte) *http.Request {
	r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	return r
}

func sameAsEncodingJSON[T any](t *testing.T, body []byte, got T) {
	t.Helper()
	var std T
	if err := json.Unmarshal(body, &std); err != nil || !reflect.DeepEqual(std, got) {
		t.Fatalf("accepted as %+v, encoding/json reads %+v (%v)", got, std, err)
	}
	again, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back T
	if err := decodeBytes(again, &back); err != nil || !reflect.DeepEqual(back, got) {
		t.Fatalf("%s decoded again is %+v (%v), want %+v", again, back, err, got)
	}
}
