package platform

import (
	"fmt"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Config is the part of every service's configuration that the platform
// uses. Services embed it in their own config struct.
type Config struct {
	Addr            string        `envconfig:"ADDR" default:":8080"`
	AdminAddr       string        `envconfig:"ADMIN_ADDR" default:"127.0.0.1:9000"` // probes, pprof, /ops: never public
	AdminToken      string        `envconfig:"ADMIN_TOKEN"`                         // when set, admin routes but the probes need it
	RedisURL        string        `envconfig:"REDIS_URL" default:"redis://127.0.0.1:6379/0"`
	RedisCluster    bool          `envconfig:"REDIS_CLUSTER"`                 // REDIS_URL is a cluster URL: redis://host:7001?addr=host:7002&addr=host:7003
	Partitions      int           `envconfig:"STREAM_PARTITIONS" default:"1"` // streams per entity type (eventstore.WithPartitions)
	RedisPassword   string        `envconfig:"REDIS_PASSWORD"`                // overrides the URL's password
	RedisDial       time.Duration `envconfig:"REDIS_DIAL_TIMEOUT" default:"5s"`
	RedisRead       time.Duration `envconfig:"REDIS_READ_TIMEOUT" default:"3s"` // blocking reads get their block time on top
	RedisWrite      time.Duration `envconfig:"REDIS_WRITE_TIMEOUT" default:"3s"`
	MinReplicas     int           `envconfig:"REDIS_MIN_REPLICAS"`                 // replicas that must have an append before it is acknowledged (eventstore.WithReplicas); 0: none, no WAIT
	ReplicaTimeout  time.Duration `envconfig:"REDIS_REPLICA_TIMEOUT" default:"1s"` // how long an append waits for them; below REDIS_READ_TIMEOUT
	KeyPrefix       string        `envconfig:"KEY_PREFIX"`                         // in front of every Redis key; for tests
	RequestTimeout  time.Duration `envconfig:"REQUEST_TIMEOUT" default:"5s"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s"`
	MaxBodyBytes    int64         `envconfig:"MAX_BODY_BYTES" default:"1048576"`
	MaxBatch        int           `envconfig:"MAX_BATCH" default:"1000"` // items in one POSTed array
	// A primary and its replicas behind Redis Sentinels: the client asks the
	// Sentinels at REDIS_SENTINEL_ADDRS (host:port, comma-separated) which
	// server is the primary named REDIS_SENTINEL_MASTER, and asks again after
	// a failover. REDIS_URL then gives only the user, password and database.
	RedisSentinelMaster   string   `envconfig:"REDIS_SENTINEL_MASTER"`
	RedisSentinelAddrs    []string `envconfig:"REDIS_SENTINEL_ADDRS"`
	RedisSentinelPassword string   `envconfig:"REDIS_SENTINEL_PASSWORD"` // when the Sentinels ask for one
	// PostgreSQL, where pkg/archive keeps the events trimmed from the
	// streams; empty: no archive, and the streams are never trimmed.
	ArchiveURL string `envconfig:"ARCHIVE_URL"`
}

// Load fills a service's config struct from the environment.
func Load(cfg any) error {
	if err := envconfig.Process("", cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Mask hides a secret in logs.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}
