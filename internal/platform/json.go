package platform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// WriteError answers with {"error": "..."} and the error's status.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, internal := StatusOf(err)
	if internal {
		slog.Default().ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	WriteJSON(w, status, map[string]string{"error": msg})
}

// Handle adapts a handler that returns its answer or an error.
func Handle(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, v)
	}
}

// Decode reads a request body of exactly one JSON value into v. Unknown
// fields, wrong types, trailing data and oversized bodies are client errors.
func Decode(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(body, v)
}

func readBody(r *http.Request) ([]byte, error) {
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

// decodeBytes is Decode of a body already read.
func decodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return Errorf(http.StatusBadRequest, "request body is empty, want JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badJSON(err)
	}
	if dec.More() {
		return Errorf(http.StatusBadRequest, "malformed JSON: more than one value in the body")
	}
	return nil
}

func badJSON(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	case errors.As(err, &typ) && typ.Field != "":
		return Errorf(http.StatusBadRequest, "field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &typ):
		return Errorf(http.StatusBadRequest, "body must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return Errorf(http.StatusBadRequest, "%s", strings.TrimPrefix(err.Error(), "json: "))
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

// DecodeOneOrMany reads a body that is one object or an array of them.
func DecodeOneOrMany[T any](r *http.Request) ([]T, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var many []T
		if err := decodeBytes(body, &many); err != nil {
			return nil, err
		}
		if len(many) == 0 {
			return nil, Errorf(http.StatusBadRequest, "the list is empty")
		}
		return many, nil
	}
	var one T
	if err := decodeBytes(body, &one); err != nil {
		return nil, err
	}
	return []T{one}, nil
}
