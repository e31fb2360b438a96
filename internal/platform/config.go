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
	RedisURL        string        `envconfig:"REDIS_URL" default:"redis://127.0.0.1:6379/0"`
	RedisPassword   string        `envconfig:"REDIS_PASSWORD"` // overrides the URL's password
	KeyPrefix       string        `envconfig:"KEY_PREFIX"`     // in front of every Redis key; for tests
	RequestTimeout  time.Duration `envconfig:"REQUEST_TIMEOUT" default:"5s"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"10s"`
	MaxBodyBytes    int64         `envconfig:"MAX_BODY_BYTES" default:"1048576"`
	MaxBatch        int           `envconfig:"MAX_BATCH" default:"1000"` // items in one POSTed array
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
