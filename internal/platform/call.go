package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Call sends a JSON request to another service and decodes its JSON answer
// into out (if not nil). The client's transport carries the trace on (see
// Outbound). A client error of the other service comes back as an
// *Error with its status and message; one that cannot be reached, or fails,
// as ErrUnavailable.
func Call(ctx context.Context, client *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrUnavailable, method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrUnavailable, method, url, err)
	}
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%w: %s %s answered %d: %s", ErrUnavailable, method, url, resp.StatusCode, data)
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		json.Unmarshal(data, &e)
		return &Error{Status: resp.StatusCode, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// Poster is the client of one POST route: Send posts v as JSON to URL.
type Poster[T any] struct {
	HTTP *http.Client
	URL  string
}

// Send posts v and reads no answer but its status.
func (p Poster[T]) Send(ctx context.Context, v T) error {
	return Call(ctx, p.HTTP, http.MethodPost, p.URL, v, nil)
}
