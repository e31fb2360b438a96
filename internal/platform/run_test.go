package platform

import (
	"testing"
	"time"

	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The services' Redis clients speak RESP2, which spares them go-redis's
// search for push notifications around every reply.
func TestRedisClientsSpeakRESP2(t *testing.T) {
	t.Parallel()
	opt, err := redisOptions(Config{RedisURL: redistest.URL(t), RedisCluster: redistest.Cluster(), Partitions: 1,
		RedisDial: 5 * time.Second, RedisRead: 3 * time.Second, RedisWrite: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opt)
	defer rdb.Close()
	info, err := rdb.ClientInfo(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if info.Resp != 2 {
		t.Fatalf("the client speaks RESP%d, want RESP2", info.Resp)
	}
}

// With REDIS_SENTINEL_MASTER the client goes through the Sentinels, as
// go-redis's failover client, with the user and password of REDIS_URL.
func TestSentinelSettingsMakeAFailoverClient(t *testing.T) {
	t.Parallel()
	cfg := Config{RedisURL: "redis://shop:secret@ignored:6379/2", Partitions: 1, RedisSentinelMaster: "ordershop",
		RedisSentinelAddrs: []string{"s1:26379", " s2:26379", ""}, RedisSentinelPassword: "watch"}
	opt, err := redisOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opt.MasterName != "ordershop" || len(opt.Addrs) != 2 || opt.Addrs[1] != "s2:26379" || opt.Username != "shop" ||
		opt.Password != "secret" || opt.DB != 2 || opt.SentinelPassword != "watch" || opt.Protocol != 2 {
		t.Fatalf("options %+v", opt)
	}
	cfg.RedisPassword = "other"
	if opt, _ := redisOptions(cfg); opt.Password != "other" {
		t.Fatalf("REDIS_PASSWORD does not override the URL's: %q", opt.Password)
	}
	for name, bad := range map[string]Config{
		"no addrs":  {RedisURL: cfg.RedisURL, Partitions: 1, RedisSentinelMaster: "ordershop"},
		"no master": {RedisURL: cfg.RedisURL, Partitions: 1, RedisSentinelAddrs: []string{"s1:26379"}},
		"cluster":   {RedisURL: cfg.RedisURL, Partitions: 1, RedisSentinelMaster: "ordershop", RedisSentinelAddrs: []string{"s1:26379"}, RedisCluster: true},
	} {
		if _, err := redisOptions(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
