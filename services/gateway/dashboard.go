package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// The live dashboard, on the admin listener: the page at /, its event
// stream at /events, and the streams with their consumer groups at
// /ops/streams. The page is plain HTML, CSS and JavaScript, embedded.
//
//go:embed dashboard
var dashboardFiles embed.FS

const (
	// Open event streams at once; each holds a blocked read per stream.
	maxWatchers = 8
	// How long a read blocks for new entries; a watcher that left frees its
	// connections within it.
	watchBlock = 2 * time.Second
	// How long one write to a watcher may take: the admin server's
	// WriteTimeout would end the stream after 30 s, so each write extends it.
	watchWrite = 10 * time.Second
)

type dashboard struct {
	app       *platform.App
	rdb       redis.UniversalClient // the blocked reads' own pool
	streams   []string              // names
	keys      []string              // their keys, in the same order
	heartbeat time.Duration
	perClient int           // open event streams per client address; 0: no limit but maxWatchers
	maxAge    time.Duration // an event stream ends after it; 0: never

	mu       sync.Mutex
	watchers int            // open event streams
	byClient map[string]int // open event streams per client address
}

func serveDashboard(app *platform.App, cfg config) error {
	heartbeat := cfg.EventsHeartbeat
	if heartbeat <= 0 { // a config made in code, not read from the environment
		heartbeat = 5 * time.Second
	}
	d := &dashboard{app: app, streams: shop.Domain.Partitions(app.Store), heartbeat: heartbeat, perClient: cfg.EventsPerClient, maxAge: cfg.EventsMaxAge,
		byClient: map[string]int{}}
	for _, s := range d.streams {
		d.keys = append(d.keys, app.Store.StreamKey(s))
	}
	d.rdb = platform.OwnPool(app.Redis, maxWatchers*len(d.keys)+1)
	app.Go(func(ctx context.Context) error { <-ctx.Done(); return d.rdb.Close() })

	files, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		return err
	}
	// The page and its files hold no data: served without the token, which
	// the page sends with each request it makes.
	for path, name := range map[string]string{"/": "index.html", "/dashboard.css": "dashboard.css", "/dashboard.js": "dashboard.js"} {
		app.AdminPublic(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, files, name)
		})
	}
	app.Admin.Get("/events", d.events)
	app.Admin.Get("/ops/streams", platform.Handle(d.groups))
	return nil
}

// entry is what a watcher is sent of a stream entry.
type entry struct {
	Stream     string `json:"stream"` // its key, e.g. events:{customer}
	ID         string `json:"id"`     // its stream ID
	Type       string `json:"type"`
	EntityType string `json:"entity_type"`
	EntityID   string `json:"entity_id"`
	Version    string `json:"version"`
	Time       string `json:"time"`
	EventID    string `json:"event_id"`
}

type read struct {
	stream int // index in keys
	entry  entry
}

// events streams the entries appended to every stream as Server-Sent
// Events. Each event's id is the position in every stream after it,
// "events:{customer}=1700000000000-0,events:{order}=…", so that a client
// that reconnects with it as Last-Event-ID resumes exactly after the last
// entry it saw, in each stream. Without one it starts at the streams' ends;
// its first event, "streams", names the streams and says where. Comments
// every heartbeat keep proxies and the client sure the stream is alive.
func (d *dashboard) events(w http.ResponseWriter, r *http.Request) {
	client, err := d.admit(r)
	if err != nil {
		platform.WriteError(w, r, err)
		return
	}
	defer d.leave(client)
	pos, err := d.positions(r.Context(), r.Header.Get("Last-Event-ID"))
	if err != nil {
		platform.WriteError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	reads := make(chan read)
	failed := make(chan error, len(d.keys))
	for i, from := range pos {
		go func() { failed <- d.follow(ctx, i, from, reads) }()
	}
	write := func(s string) error {
		if err := rc.SetWriteDeadline(time.Now().Add(watchWrite)); err != nil {
			return err
		}
		if _, err := io.WriteString(w, s); err != nil {
			return err
		}
		return rc.Flush()
	}
	names, _ := json.Marshal(d.keys)
	err = write("event: streams\nid: " + d.encode(pos) + "\ndata: " + string(names) + "\n\n")
	heartbeat := time.NewTicker(d.heartbeat)
	defer heartbeat.Stop()
	var expired <-chan time.Time // never without a max age
	if d.maxAge > 0 {
		timer := time.NewTimer(d.maxAge)
		defer timer.Stop()
		expired = timer.C
	}
	for err == nil {
		select {
		case rd := <-reads:
			pos[rd.stream] = rd.entry.ID
			data, _ := json.Marshal(rd.entry)
			err = write("id: " + d.encode(pos) + "\ndata: " + string(data) + "\n\n")
		case <-heartbeat.C:
			err = write(": heartbeat\n\n")
		case err = <-failed:
			// Redis went away: the client reconnects and resumes.
			d.app.Log.WarnContext(ctx, "event stream: read failed", "err", err)
		case <-expired:
			// The id last sent covers only what was written: the client
			// reconnects and resumes there.
			return
		case <-ctx.Done():
			return
		case <-d.app.Stopping():
			return
		}
	}
}

// admit counts an event stream for the request's client (clientOf): a
// client at its limit is 429, and with maxWatchers open anyone is 503.
func (d *dashboard) admit(r *http.Request) (string, error) {
	client := clientOf(r)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.perClient > 0 && d.byClient[client] >= d.perClient {
		return "", platform.Errorf(http.StatusTooManyRequests, "%s has %d event streams open already, the most one client may have", client, d.perClient)
	}
	if d.watchers >= maxWatchers {
		return "", platform.Errorf(http.StatusServiceUnavailable, "%d event streams are open already, the most there may be", maxWatchers)
	}
	d.watchers++
	d.byClient[client]++
	return client, nil
}

// leave frees what admit counted.
func (d *dashboard) leave(client string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.watchers--
	if d.byClient[client]--; d.byClient[client] == 0 {
		delete(d.byClient, client)
	}
}

// follow sends the entries of stream i after from, in order, until ctx
// ends: first the events the store replays, with an archive also those a
// trim took out of the stream (a resume from below its start), then the
// entries XREAD hands on as they come.
func (d *dashboard) follow(ctx context.Context, i int, from string, out chan<- read) error {
	send := func(e entry) bool {
		select {
		case out <- read{i, e}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	err := d.app.Store.Replay(ctx, d.streams[i], from, func(events []eventstore.Event) error {
		for _, e := range events {
			if !send(entry{Stream: d.keys[i], ID: e.StreamID, Type: e.Type, EntityType: e.EntityType, EntityID: e.EntityID,
				Version: strconv.FormatInt(e.Version, 10), Time: e.Time.UTC().Format(time.RFC3339Nano), EventID: e.ID}) {
				return ctx.Err()
			}
			from = e.StreamID
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replay %s: %w", d.keys[i], err)
	}
	for {
		res, err := d.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{d.keys[i], from}, Count: 100, Block: watchBlock}).Result()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return fmt.Errorf("XREAD %s: %w", d.keys[i], err)
		}
		for _, m := range res[0].Messages {
			str := func(k string) string { s, _ := m.Values[k].(string); return s }
			if !send(entry{Stream: d.keys[i], ID: m.ID, Type: str("type"), EntityType: str("entity_type"), EntityID: str("entity_id"),
				Version: str("version"), Time: str("time"), EventID: str("event_id")}) {
				return nil
			}
			from = m.ID
		}
	}
}

var streamID = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// positions reads a Last-Event-ID, or, without one, each stream's last ID.
// A stream the ID does not name (a stream added since) starts at its end.
func (d *dashboard) positions(ctx context.Context, lastEventID string) ([]string, error) {
	given := map[string]string{}
	if lastEventID != "" {
		for _, part := range strings.Split(lastEventID, ",") {
			key, id, ok := strings.Cut(part, "=")
			if !ok || !streamID.MatchString(id) {
				return nil, platform.Errorf(http.StatusBadRequest, "Last-Event-ID must be stream=id pairs separated by commas, not %.200q", lastEventID)
			}
			given[key] = id
		}
	}
	pos := make([]string, len(d.keys))
	for i, key := range d.keys {
		if id, ok := given[key]; ok {
			pos[i] = id
			continue
		}
		info, err := d.app.Redis.XInfoStream(ctx, key).Result()
		switch {
		case err != nil && redis.HasErrorPrefix(err, "no such key"):
			pos[i] = "0-0"
		case err != nil:
			return nil, fmt.Errorf("%w: XINFO STREAM %s: %w", platform.ErrUnavailable, key, err)
		default:
			pos[i] = info.LastGeneratedID
		}
	}
	return pos, nil
}

func (d *dashboard) encode(pos []string) string {
	parts := make([]string, len(pos))
	for i, id := range pos {
		parts[i] = d.keys[i] + "=" + id
	}
	return strings.Join(parts, ",")
}

// streamView is a stream with its consumer groups, as the page shows it.
type streamView struct {
	Stream string `json:"stream"` // its key
	Name   string `json:"name"`   // as the dead-letter routes name it
	Length int64  `json:"length"`
	LastID string `json:"last_id"`
	// Trimmed are the entries appended that the stream holds no more: the
	// archive service trimmed them.
	Trimmed int64       `json:"trimmed"`
	Groups  []groupView `json:"groups"`
}

type groupView struct {
	Name        string         `json:"name"`
	Lag         int64          `json:"lag"` // -1: Redis cannot tell
	Pending     int64          `json:"pending"`
	Done        int64          `json:"done"` // read and acked, of group archive: archived; -1 with the lag
	DeadLetters int64          `json:"dead_letters"`
	Consumers   []consumerView `json:"consumers"`
}

type consumerView struct {
	Name    string `json:"name"`
	Pending int64  `json:"pending"`
	IdleMS  int64  `json:"idle_ms"` // since its last read or claim
}

// groups reads each stream's consumer groups (XINFO GROUPS) and their
// consumers (XINFO CONSUMERS), one key per command.
func (d *dashboard) groups(r *http.Request) (any, error) {
	ctx := r.Context()
	out := make([]streamView, 0, len(d.streams))
	for _, s := range d.streams {
		info, err := d.app.Store.Info(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", platform.ErrUnavailable, s, err)
		}
		v := streamView{Stream: info.Stream, Name: s, Length: info.Length, LastID: info.LastID, Trimmed: info.Added - info.Length, Groups: []groupView{}}
		for _, g := range info.Groups {
			cs, err := d.app.Redis.XInfoConsumers(ctx, info.Stream, g.Name).Result()
			if err != nil {
				return nil, fmt.Errorf("%w: XINFO CONSUMERS %s %s: %w", platform.ErrUnavailable, info.Stream, g.Name, err)
			}
			gv := groupView{Name: g.Name, Lag: g.Lag, Pending: g.Pending, Done: -1, DeadLetters: g.DeadLetters, Consumers: []consumerView{}}
			if g.Lag >= 0 { // Redis counts the lag from the entries appended
				gv.Done = info.Added - g.Lag - g.Pending
			}
			for _, c := range cs {
				gv.Consumers = append(gv.Consumers, consumerView{Name: c.Name, Pending: c.Pending, IdleMS: c.Idle.Milliseconds()})
			}
			v.Groups = append(v.Groups, gv)
		}
		out = append(out, v)
	}
	return out, nil
}
