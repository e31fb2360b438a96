package platform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/ordershop/ordershop/pkg/eventstore"
)

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Field is a key of a JSON object and its value.
type Field struct {
	Key   string
	Value any
}

// buffers hold answers that WriteObject makes whole before it writes them.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// WriteObject answers with a JSON object of fields in their order: what
// WriteJSON of a map of them answers when their keys are sorted, without
// the map. The answer is made whole first, so that a value that cannot be
// encoded is an error answer, not half of one.
func WriteObject(w http.ResponseWriter, r *http.Request, status int, fields []Field) {
	buf := buffers.Get().(*bytes.Buffer)
	defer buffers.Put(buf)
	buf.Reset()
	enc := json.NewEncoder(buf)
	buf.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			buf.WriteByte(',')
		}
		// Encode ends each value with a newline, which a member has not.
		enc.Encode(f.Key)
		buf.Truncate(buf.Len() - 1)
		buf.WriteByte(':')
		if err := enc.Encode(f.Value); err != nil {
			WriteError(w, r, err)
			return
		}
		buf.Truncate(buf.Len() - 1)
	}
	buf.WriteString("}\n")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// WriteError answers with {"error": "..."} and the error's status.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, internal := StatusOf(err)
	if internal {
		slog.Default().ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	answer := struct {
		Error   string   `json:"error"`
		Written []string `json:"written,omitempty"`
	}{Error: msg}
	if e := (*Error)(nil); errors.As(err, &e) {
		answer.Written = e.Written
	}
	WriteJSON(w, status, answer)
}

// IdempotencyHeader names a command its client may send again: see
// eventstore.WithIdempotencyKey.
const IdempotencyHeader = "Idempotency-Key"

// Handle adapts a handler that returns its answer or an error. A request
// with an Idempotency-Key is handled on a context that carries the key,
// scoped by its method and path, so that its appends and new ids are the
// same on every try.
func Handle(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if key := r.Header.Get(IdempotencyHeader); key != "" {
			r = r.WithContext(eventstore.WithIdempotencyKey(r.Context(), r.Method+" "+r.URL.Path+" "+key))
		}
		v, err := h(r)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, v)
	}
}

// Decode reads a request body of exactly one JSON value into v. Bodies not
// declared JSON, unknown, duplicate or wrongly cased keys, wrong types,
// integers beyond MaxInt, trailing data and oversized bodies are client
// errors.
func Decode(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(body, v)
}

func readBody(r *http.Request) ([]byte, error) {
	// A web page can make a browser send a form or text/plain to any
	// address without asking (no CORS preflight), but not JSON: requiring
	// it keeps pages a shop operator visits from writing to the shop.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, Errorf(http.StatusUnsupportedMediaType, "Content-Type must be application/json, not %q", r.Header.Get("Content-Type"))
	}
	return ReadBody(r)
}

// ReadBody reads a request's body whole: one over the limit is 413.
func ReadBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, TooLarge(tooBig.Limit)
	case err != nil:
		return nil, Errorf(http.StatusBadRequest, "cannot read request body: %v", err)
	}
	return body, nil
}

// MaxInt is the largest integer a request may hold (and -MaxInt the
// smallest): JavaScript clients read numbers as doubles, exact up to 2^53-1.
const MaxInt = 1<<53 - 1

// decodeBytes is Decode of a body already read. encoding/json matches keys
// without regard to case and keeps the last of two equal keys, so the keys
// are checked first, against v's JSON names.
func decodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return Errorf(http.StatusBadRequest, "request body is empty, want JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := checkValue(dec, reflect.TypeOf(v).Elem(), "", 0); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the body ended inside a value
		}
		return badJSON(err)
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return badJSON(err)
	}
	// Not dec.More(), which is false before a stray "]" or "}".
	if len(bytes.TrimSpace(body[dec.InputOffset():])) > 0 {
		return Errorf(http.StatusBadRequest, "malformed JSON: more than one value in the body")
	}
	return nil
}

// maxDepth is how deeply request bodies may nest, a few levels being all
// they need: checkValue calls itself for each level, and a megabyte of "["
// must not make it a million calls deep.
const maxDepth = 16

// checkValue reads the next JSON value from dec, which is to be decoded into
// a t, and refuses keys that are not exactly a field's JSON name, keys given
// twice, integers beyond MaxInt and nesting beyond maxDepth. Anything else,
// such as a wrong type, is left to json.Decode. field is the key of the
// value, for messages; depth how deep it is.
func checkValue(dec *json.Decoder, t reflect.Type, field string, depth int) error {
	if depth > maxDepth {
		return Errorf(http.StatusBadRequest, "malformed JSON: nested deeper than %d levels", maxDepth)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('['):
		for dec.More() {
			if err := checkValue(dec, elemType(t), field, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('{'):
		fields := fieldTypes(t)
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key := tok.(string) // the decoder allows nothing else here
			ft, known := fields[key]
			switch {
			case seen[key]:
				return Errorf(http.StatusBadRequest, "field %q is given twice", key)
			case fields != nil && !known:
				return Errorf(http.StatusBadRequest, "unknown field %q", key)
			case fields == nil:
				ft = elemType(t) // a map's, or a type error for json.Decode
			}
			seen[key] = true
			if err := checkValue(dec, ft, key, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	if n, ok := tok.(json.Number); ok {
		if i, err := strconv.ParseInt(string(n), 10, 64); (err == nil && (i > MaxInt || i < -MaxInt)) || errors.Is(err, strconv.ErrRange) {
			return Errorf(http.StatusBadRequest, "field %q must be between -%d and %d", field, int64(MaxInt), int64(MaxInt))
		}
	}
	return nil
}

// elemType is the type of a list's or a map's elements, t itself for others.
func elemType(t reflect.Type) reflect.Type {
	switch t.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return t.Elem()
	}
	return t
}

// fieldTypes maps a struct's JSON names to their field types; nil for a
// type that is not a struct.
func fieldTypes(t reflect.Type) map[string]reflect.Type {
	if t.Kind() != reflect.Struct {
		return nil
	}
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case !f.IsExported() || name == "-":
		case name == "":
			out[f.Name] = f.Type
		default:
			out[name] = f.Type
		}
	}
	return out
}

func badJSON(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	case errors.As(err, &typ) && typ.Field != "":
		return Errorf(http.StatusBadRequest, "field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &typ):
		return Errorf(http.StatusBadRequest, "body must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	default:
		return Errorf(http.StatusBadRequest, "invalid JSON: %v", err)
	}
}
func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "int32":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	default:
		return fmt.Sprintf("a %s", goKind)
	}
}

// DecodeOneOrMany reads a body that is one object or an array of 1 to max
// of them: an empty array is a 400, a longer one a 413, and an item that
// cannot be decoded a 400 that names it (see itemError).
func DecodeOneOrMany[T any](r *http.Request, max int) ([]T, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var many []T
		if err := decodeBytes(body, &many); err != nil {
			return nil, badItem[T](body, err)
		}
		switch {
		case len(many) == 0:
			return nil, Errorf(http.StatusBadRequest, "the list is empty")
		case len(many) > max:
			return nil, Errorf(http.StatusRequestEntityTooLarge, "the list has %d items, more than %d", len(many), max)
		}
		return many, nil
	}
	var one T
	if err := decodeBytes(body, &one); err != nil {
		return nil, err
	}
	return []T{one}, nil
}

// badItem is err, the error of decoding a list of T, naming the item it is
// about when it is about one. Only a list that failed is decoded again,
// item by item, to find it.
func badItem[T any](body []byte, err error) error {
	var items []json.RawMessage
	if decodeBytes(body, &items) != nil {
		return err // not a list of values
	}
	for i, item := range items {
		var one T
		if itemErr := decodeBytes(item, &one); itemErr != nil {
			return itemError(itemErr, i, len(items))
		}
	}
	return err
}

// itemError names the item of a list that a client error is about, counting
// from 1: "item 3 of 5: name is required". The item of a list of one needs
// no name, and other errors are not the item's.
func itemError(err error, i, n int) error {
	var e *Error
	if n > 1 && (errors.As(err, &e) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrRefused)) {
		status, msg, _ := StatusOf(err)
		return Errorf(status, "item %d of %d: %s", i+1, n, msg)
	}
	return err
}
