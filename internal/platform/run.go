package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// NoConfig is the config of a service that needs none beyond Config.
type NoConfig struct{}

// Run runs a service binary, the same way for all of them: it reads Config
// and the service's own config C from the environment, connects to Redis,
// lets wire add the service's routes and work to the app, and serves until
// SIGTERM. With -healthcheck it only asks the /healthz of the running
// service's admin listener, so that images need no shell; with -rebuild it
// rebuilds the entity cache of the streams (each a list of the kinds that
// live in it) and exits; with -verify it checks them (see Verify), prints
// what it found, and exits 1 on any finding.
func Run[C any](ctx context.Context, name string, domain Domain, wire func(*App, C) error) {
	check := flag.Bool("healthcheck", false, "ask the running service's admin /healthz and exit 0 if alive")
	rebuild := flag.Bool("rebuild", false, "drop the entity cache, build it again from the streams, and exit")
	verify := flag.Bool("verify", false, "check the cache against the streams and the shop's invariants, report, and exit 1 on any finding")
	flag.Parse()
	// The log's lines wait in a buffer (newLog): what is left is written
	// out as Run returns; where it exits on an error, it has logged an
	// Error line, which is written out at once with those before it.
	log, out := newLog(os.Stdout, logFlush)
	defer out.Close()
	log = log.With("service", name)
	slog.SetDefault(log)
	var base Config
	var cfg C
	if err := Load(&base); err != nil {
		log.Error("startup", "err", err)
		os.Exit(1)
	}
	if err := Load(&cfg); err != nil {
		log.Error("startup", "err", err)
		os.Exit(1)
	}
	if *check {
		os.Exit(healthcheck(base.AdminAddr))
	}
	collectLessOften()
	tp, shutdownTracing, err := Tracing(ctx, name)
	if err != nil {
		log.Error("startup", "err", err)
		os.Exit(1)
	}
	useTracerProvider(func() trace.TracerProvider { return tp })
	err = connect(base, log, func(rdb redis.UniversalClient) error {
		app := NewApp(name, base, rdb, log)
		if base.ArchiveURL != "" {
			// Connects when first used: a service starts while PostgreSQL is away.
			db, err := pgxpool.New(ctx, base.ArchiveURL)
			if err != nil {
				return fmt.Errorf("ARCHIVE_URL: %w", err)
			}
			defer db.Close()
			app.UseArchive(db)
		}
		if *rebuild {
			// Each stream is read twice: for the versions, then the cache.
			return withProgress(ctx, app, domain, "rebuild", 2, func(ctx context.Context) error { return Rebuild(ctx, app, domain.Streams) })
		}
		if *verify {
			// Each stream is read twice: for its history, then the cache.
			return withProgress(ctx, app, domain, "verify", 2, func(ctx context.Context) error {
				return Verify(ctx, app.Cache, domain, out) // in order with the log's lines
			})
		}
		if err := wire(app, cfg); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
		defer stop()
		return app.Serve(ctx)
	})
	// The spans of the last seconds are still to export.
	flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), base.ShutdownTimeout)
	defer cancel()
	err = errors.Join(err, shutdownTracing(flush))
	if err != nil {
		log.Error("stopped", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
}

// connect connects to Redis, one server, a cluster, or the primary behind
// Sentinels, and hands the client to do.
func connect(cfg Config, log *slog.Logger, do func(redis.UniversalClient) error) error {
	opt, err := redisOptions(cfg)
	if err != nil {
		return err
	}
	redis.SetLogger(redisLog{log})
	log.Info("starting", "addr", cfg.Addr, "admin_addr", cfg.AdminAddr, "admin_token", Mask(cfg.AdminToken),
		"redis", opt.Addrs, "redis_cluster", cfg.RedisCluster, "redis_sentinel_master", cfg.RedisSentinelMaster, "stream_partitions", cfg.Partitions,
		"redis_password", Mask(opt.Password), "redis_timeouts", fmt.Sprintf("dial %v, read %v, write %v", opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout),
		"request_timeout", cfg.RequestTimeout, "max_body_bytes", cfg.MaxBodyBytes, "key_prefix", cfg.KeyPrefix)
	rdb := redis.NewUniversalClient(opt)
	defer rdb.Close()
	if err := instrument(rdb, otel.GetTracerProvider()); err != nil {
		return err
	}
	return do(rdb)
}

// redisOptions reads REDIS_URL, a cluster URL when REDIS_CLUSTER is set,
// and the Sentinels' settings when REDIS_SENTINEL_MASTER is.
func redisOptions(cfg Config) (*redis.UniversalOptions, error) {
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("STREAM_PARTITIONS must be 1 or more, not %d", cfg.Partitions)
	}
	var opt *redis.UniversalOptions
	if cfg.RedisSentinelMaster != "" || len(cfg.RedisSentinelAddrs) > 0 {
		return sentinelOptions(cfg)
	}
	if cfg.RedisCluster {
		c, err := redis.ParseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL (a cluster URL, as REDIS_CLUSTER is set): %w", err)
		}
		opt = &redis.UniversalOptions{Addrs: c.Addrs, Username: c.Username, Password: c.Password, TLSConfig: c.TLSConfig, IsClusterMode: true}
	} else {
		o, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		opt = &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}
	}
	withSettings(opt, cfg)
	return opt, nil
}

// sentinelOptions are the options of a failover client: with MasterName
// set, go-redis asks the Sentinels for the primary's address at each dial,
// and drops its connections to the old primary when they announce a new
// one. While there is none, dials fail after a short backoff, and after as
// many failed dials as the pool has connections, only one dial a second
// tries again until one succeeds; the consumers back off themselves.
func sentinelOptions(cfg Config) (*redis.UniversalOptions, error) {
	if cfg.RedisCluster {
		return nil, fmt.Errorf("REDIS_CLUSTER and REDIS_SENTINEL_MASTER exclude each other")
	}
	var addrs []string
	for _, a := range cfg.RedisSentinelAddrs {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if cfg.RedisSentinelMaster == "" || len(addrs) == 0 {
		return nil, fmt.Errorf("REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRS go together")
	}
	o, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL (its user, password and database, as REDIS_SENTINEL_MASTER is set): %w", err)
	}
	opt := &redis.UniversalOptions{Addrs: addrs, MasterName: cfg.RedisSentinelMaster, SentinelPassword: cfg.RedisSentinelPassword,
		Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}
	withSettings(opt, cfg)
	return opt, nil
}

// withSettings sets what every kind of client takes alike: REDIS_PASSWORD,
// the timeouts and the protocol.
func withSettings(opt *redis.UniversalOptions, cfg Config) {
	if cfg.RedisPassword != "" {
		opt.Password = cfg.RedisPassword
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = cfg.RedisDial, cfg.RedisRead, cfg.RedisWrite
	// RESP2: on RESP3, go-redis looks for push notifications (client-side
	// caching, maintenance notices) before each command's reply, and on a
	// connection idle for seconds with a system call of its own, for
	// features the services do not use. go-redis reads the replies they ask
	// for (XREADGROUP, XINFO, HGETALL, scripts' tables) into the same values
	// on either protocol.
	opt.Protocol = 2
}

func healthcheck(addr string) int {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

// collectLessOften sets the garbage collector's GOGC to 400 unless the
// GOGC variable is set. A service's live heap is a few MiB, so at the
// default of 100 the collector runs dozens of times a second under load,
// about a fifth of the CPU a command costs; at 400 the heap stays within
// some tens of MiB, well under the containers' 256 MiB. GOGC and GOMEMLIMIT
// decide otherwise, as always.
func collectLessOften() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// redisLog puts the Redis client's own messages (dial failures while Redis
// is away) into the service's structured log.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

// Rebuild builds the entity cache of every stream, and the versions that
// commands expect, again from the streams, which are the source of truth.
// Commands may run meanwhile: versions only rise, and the cache is mended
// entity by entity, never emptied.
func Rebuild(ctx context.Context, app *App, streams [][]entitycache.Projection) error {
	for _, kinds := range streams {
		stream := entitycache.StreamOf(kinds[0])
		for _, part := range app.Store.Partitions(stream) {
			if err := app.Store.RebuildVersions(ctx, part); err != nil {
				return fmt.Errorf("rebuild the versions of %s: %w", part, err)
			}
		}
		if err := app.Cache.Rebuild(ctx, kinds...); err != nil {
			return fmt.Errorf("rebuild the cache of %s: %w", stream, err)
		}
		app.Log.Info("cache rebuilt", "stream", app.Store.StreamKey(stream))
	}
	return nil
}

// withProgress runs fn, which replays every stream of the domain passes
// times, with its progress on stderr when that is a terminal.
func withProgress(ctx context.Context, app *App, domain Domain, what string, passes int64, fn func(context.Context) error) error {
	if !onTerminal(os.Stderr) {
		return fn(ctx)
	}
	var streams []string
	for _, kinds := range domain.Streams {
		streams = append(streams, entitycache.StreamOf(kinds[0]))
	}
	total, err := eventCount(ctx, app.Store, streams)
	if err != nil {
		return err
	}
	ctx, stop := showProgress(ctx, os.Stderr, what, passes*total, time.Second)
	defer stop()
	return fn(ctx)
}

// Domain is what a binary is handed of the domain it serves, since the
// platform knows none: the streams, each with the kinds that live in it,
// which -rebuild builds and -verify checks, and the invariants across
// services that -verify checks too.
type Domain struct {
	Streams    [][]entitycache.Projection
	Invariants []Invariant
}

// Partitions are every partition of every stream of the domain, by the
// names the event store knows them.
func (d Domain) Partitions(store *eventstore.Store) []string {
	var out []string
	for _, kinds := range d.Streams {
		out = append(out, store.Partitions(entitycache.StreamOf(kinds[0]))...)
	}
	return out
}

// Infos reads the facts of every partition of every stream of the domain,
// with every group's (eventstore.Store.Info).
func (d Domain) Infos(ctx context.Context, store *eventstore.Store) ([]eventstore.StreamInfo, error) {
	var out []eventstore.StreamInfo
	for _, s := range d.Partitions(store) {
		info, err := store.Info(ctx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Invariant checks one rule of the domain and returns one line per finding.
type Invariant func(context.Context, *entitycache.Cache) ([]string, error)

// Verify checks that the history of every stream, the archive's and the
// stream's (Store.Replay), holds each event once and each entity's versions
// 1, 2, … n in order, that the cache of every stream equals what applying
// the stream gives, key for key, and that the domain's invariants hold. It writes
// one line per finding and their count, or one line "ok", and fails if it
// found anything. It reads the streams and the cache one after the other, so
// it runs on a quiet system: a command in flight may be a finding.
func Verify(ctx context.Context, cache *entitycache.Cache, domain Domain, out io.Writer) error {
	var findings []string
	for _, kinds := range domain.Streams {
		found, err := checkHistory(ctx, cache.Store(), entitycache.StreamOf(kinds[0]))
		if err != nil {
			return fmt.Errorf("read the history of %s: %w", entitycache.StreamOf(kinds[0]), err)
		}
		findings = append(findings, found...)
		diffs, err := cache.Diff(ctx, kinds...)
		if err != nil {
			return fmt.Errorf("compare the cache of %s: %w", entitycache.StreamOf(kinds[0]), err)
		}
		findings = append(findings, diffs...)
	}
	for _, check := range domain.Invariants {
		found, err := check(ctx, cache)
		if err != nil {
			return err
		}
		findings = append(findings, found...)
	}
	if len(findings) == 0 {
		fmt.Fprintf(out, "ok: the cache of %d streams equals their projection, their history holds each event once and each entity's versions in order, and %d invariant checks hold\n",
			len(domain.Streams), len(domain.Invariants))
		return nil
	}
	for _, f := range findings {
		fmt.Fprintln(out, f)
	}
	fmt.Fprintf(out, "%d findings\n", len(findings))
	return fmt.Errorf("verify: %d findings", len(findings))
}

// checkHistory replays each partition of a stream and returns one line per
// event that does not come after the one before it (by stream ID: a repeat,
// or one out of order) and per event whose version is not the one after its
// entity's last: each entity's versions are 1, 2, … n, in stream order,
// whatever part of them is archived. It keeps a version per entity, not
// the events, so that it runs in a service's memory on a long history.
func checkHistory(ctx context.Context, store *eventstore.Store, stream string) ([]string, error) {
	var found []string
	for _, part := range store.Partitions(stream) {
		last, versions := "0", map[string]int64{}
		err := store.Replay(ctx, part, "0", func(events []eventstore.Event) error {
			for _, e := range events {
				if !eventstore.IDBefore(last, e.StreamID) {
					found = append(found, fmt.Sprintf("%s: event %s (%s) comes again or out of order, after %s", part, e.StreamID, e.Type, last))
					continue
				}
				last = e.StreamID
				if v := versions[e.EntityID]; e.Version != v+1 {
					found = append(found, fmt.Sprintf("%s: event %s (%s) has version %d of %s, after %d",
						part, e.StreamID, e.Type, e.Version, e.EntityID, v))
				}
				versions[e.EntityID] = e.Version
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}
