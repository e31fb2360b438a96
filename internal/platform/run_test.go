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
