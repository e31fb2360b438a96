// Package acl_test starts a redis-server through deploy/redis/entrypoint.sh,
// on deploy/redis/users.acl rendered with passwords of the test's own, and
// shows what each service's user may and may not do. It lives in the main
// module, not beside those files: deploy/ is a module of its own.
package acl_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/ordershop/ordershop/internal/pgtest"
	"github.com/ordershop/ordershop/internal/redistest"
	"github.com/ordershop/ordershop/internal/shop"
	"github.com/ordershop/ordershop/pkg/archive"
	"github.com/ordershop/ordershop/pkg/entitycache"
	"github.com/ordershop/ordershop/pkg/eventstore"
)

// entrypoint renders users.acl, the file beside it, and starts Redis.
var entrypoint = filepath.Join("..", "..", "deploy", "redis", "entrypoint.sh")

var users = []string{"ops", "gateway", "customer", "product", "inventory", "order", "msg", "billing", "crm", "archive"}

// TestMain stops the PostgreSQL the archive's test started.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// server is a redis-server on the ACL, with each user's password, and its
// AOF on, as in docker-compose.yml.
type server struct {
	addr      string
	dir       string
	passwords map[string]string
	args      []string // redis-server's, beside the ones every server gets
	cmd       *exec.Cmd
	exited    chan struct{} // closed when cmd has exited
}

func start(t *testing.T) *server {
	t.Helper()
	return startWith(t, newPasswords())
}

// replication are the users of a replica and the Sentinels, which are no
// services.
var replication = []string{"replica", "sentinel"}

// newPasswords gives each user a password of its own.
func newPasswords() map[string]string {
	passwords := map[string]string{}
	for _, u := range append(users, replication...) {
		passwords[u] = strings.ReplaceAll(uuid.NewString(), "-", "")
	}
	return passwords
}

// startWith starts a server with the given passwords and redis-server args.
func startWith(t *testing.T, passwords map[string]string, args ...string) *server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: l.Addr().String(), dir: t.TempDir(), passwords: passwords, args: args}
	l.Close()
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

// start starts the server (again) on its address and folder.
func (s *server) start(t *testing.T) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command("sh",
		append([]string{entrypoint, "redis-server", "--bind", "127.0.0.1", "--port", port,
			"--dir", s.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always"}, s.args...)...)
	cmd.Env = append(os.Environ(), "REDIS_ACL_FILE="+filepath.Join(s.dir, "users.acl"))
	for u, pw := range s.passwords {
		cmd.Env = append(cmd.Env, "REDIS_PASSWORD_"+strings.ToUpper(u)+"="+pw)
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() { cmd.Wait(); close(exited) }()
	ops := redis.NewClient(&redis.Options{Addr: s.addr, Username: "ops", Password: s.passwords["ops"], MaxRetries: -1})
	defer ops.Close()
	up := false
	redistest.Eventually(t, 10*time.Second, "redis-server up", func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		up = ops.Ping(context.Background()).Err() == nil
		return up
	})
	if !up {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("redis-server did not start:\n%s", out)
	}
}

// stop stops the server as docker stop does; it writes its AOF first.
func (s *server) stop() {
	if s.cmd != nil {
		s.cmd.Process.Signal(os.Interrupt)
		<-s.exited
		s.cmd = nil
	}
}

func (s *server) client(t *testing.T, user string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, Username: user, Password: s.passwords[user], MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// refused: NOPERM, or what a script's refused command answers.
func refused(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "can't access") {
		t.Errorf("%s: got %v, want NOPERM", what, err)
	}
}

func allowed(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Errorf("%s: %v", what, err)
	}
}

func TestTheDefaultUserIsOff(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	anon := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("PING without a user: %v, want NOAUTH", err)
	}
	if err := anon.Do(ctx, "AUTH", "default", "").Err(); err == nil {
		t.Error("AUTH as default succeeded")
	}
	wrong := redis.NewClient(&redis.Options{Addr: s.addr, Username: "customer", Password: s.passwords["order"], MaxRetries: -1})
	defer wrong.Close()
	if err := wrong.Ping(ctx).Err(); err == nil {
		t.Error("customer logged in with order's password")
	}
}

func TestAServiceWritesOnlyItsOwnKeys(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	customer := s.client(t, "customer")
	allowed(t, customer.HSet(ctx, "{customer}:customer_entity:1", "name", "Ada").Err(), "customer HSET {customer}")
	refused(t, customer.HSet(ctx, "{order}:order_entity:1", "customer_id", "1").Err(), "customer HSET {order}")
	refused(t, customer.XAdd(ctx, &redis.XAddArgs{Stream: "events:{order}", Values: []any{"a", "b"}}).Err(), "customer XADD events:{order}")
	refused(t, customer.HGet(ctx, "{order}:versions", "1").Err(), "customer HGET {order}")
	refused(t, customer.Set(ctx, "other", "x", 0).Err(), "customer SET other")
	refused(t, customer.FlushAll(ctx).Err(), "customer FLUSHALL")
	refused(t, customer.ConfigSet(ctx, "appendonly", "no").Err(), "customer CONFIG SET")
	refused(t, customer.Keys(ctx, "*").Err(), "customer KEYS")

	order := s.client(t, "order")
	allowed(t, order.HGet(ctx, "{customer}:customer_entity:1", "name").Err(), "order HGET {customer}")
	refused(t, order.HSet(ctx, "{customer}:customer_entity:1", "name", "Eve").Err(), "order HSET {customer}")
}

// msg reads its own stream, to forget old mails (services/msg/forget.go),
// and no other.
func TestMsgReadsTheMailStreamOnly(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	mails := store(s.client(t, "msg"))
	for _, part := range partitions("email") {
		_, _, err := mails.Read(ctx, part, "0", 10)
		allowed(t, err, "msg reads "+part)
	}
	_, _, err := mails.Read(ctx, partitions("customer")[0], "0", 10)
	refused(t, err, "msg reads the customer stream")
}

func TestTheGatewayOnlyReadsAndWritesIdempotencyKeys(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	gw := s.client(t, "gateway")
	for _, kind := range []string{"customer", "product", "inventory", "order", "billing"} {
		allowed(t, gw.SMembers(ctx, "{"+kind+"}:"+kind+"_ids").Err(), "gateway SMEMBERS "+kind)
		allowed(t, gw.HMGet(ctx, "{"+kind+"}:"+kind+"_entity:1", "id").Err(), "gateway HMGET "+kind)
		refused(t, gw.HSet(ctx, "{"+kind+"}:"+kind+"_entity:1", "id", "1").Err(), "gateway HSET "+kind)
		refused(t, gw.SAdd(ctx, "{"+kind+"}:"+kind+"_ids", "1").Err(), "gateway SADD "+kind)
		refused(t, gw.Del(ctx, "{"+kind+"}:"+kind+"_ids").Err(), "gateway DEL "+kind)
		refused(t, gw.XAdd(ctx, &redis.XAddArgs{Stream: "events:{" + kind + "}", Values: []any{"a", "b"}}).Err(), "gateway XADD "+kind)
		refused(t, gw.Eval(ctx, "return 1", []string{"{" + kind + "}:x"}).Err(), "gateway EVAL "+kind)
	}
	key := "idempotency:{k}"
	allowed(t, gw.SetNX(ctx, key, "running", time.Minute).Err(), "gateway SET NX PX "+key)
	allowed(t, gw.Get(ctx, key).Err(), "gateway GET "+key)
	allowed(t, gw.Set(ctx, key, "answer", 24*time.Hour).Err(), "gateway SET EX "+key)
	allowed(t, gw.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{key}).Err(), "gateway EVAL GET "+key)
	allowed(t, gw.Del(ctx, key).Err(), "gateway DEL "+key)
	refused(t, gw.HSet(ctx, key, "a", "b").Err(), "gateway HSET "+key)
	refused(t, gw.Eval(ctx, "return redis.call('SET', 'x', 'y')", []string{key}).Err(), "gateway EVAL SET outside idempotency")
	for _, kind := range []string{"customer", "product", "inventory", "order", "billing"} {
		refused(t, gw.Set(ctx, "{"+kind+"}:appended:k", "y", 0).Err(), "gateway SET "+kind+" outside idempotency")
	}
	refused(t, gw.Set(ctx, "{email}:idempotency:k", "y", 0).Err(), "gateway SET {email}:idempotency")
	refused(t, gw.Set(ctx, "x", "y", 0).Err(), "gateway SET")
	refused(t, gw.FlushDB(ctx).Err(), "gateway FLUSHDB")
	refused(t, gw.XRange(ctx, "events:{order}", "-", "+").Err(), "gateway XRANGE")
}

// The gateway's dashboard follows every stream and reads its groups,
// consumers and dead letters, and can change none of them.
func TestTheGatewayFollowsTheStreamsAndChangesNone(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	// One stream, whatever the partitions: the rights are on events:*.
	customers := entitycache.New(eventstore.New(s.client(t, "customer"), ""))
	c := shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}
	events, err := customers.Commit(ctx, shop.Customers.Kind.Change(shop.CustomerCreated, c, eventstore.NoEntity))
	if err != nil {
		t.Fatal(err)
	}
	ops := s.client(t, "ops")
	if err := ops.XGroupCreate(ctx, "events:{customer}", "crm", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := ops.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crm", Consumer: "crm-1", Streams: []string{"events:{customer}", ">"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := ops.XAdd(ctx, &redis.XAddArgs{Stream: "events:{customer}:dead:crm", Values: []any{"a", "b"}}).Err(); err != nil {
		t.Fatal(err)
	}

	gw := s.client(t, "gateway")
	read, err := gw.XRead(ctx, &redis.XReadArgs{Streams: []string{"events:{customer}", "0-0"}, Block: 10 * time.Millisecond}).Result()
	if err != nil || len(read) != 1 || len(read[0].Messages) != 1 || read[0].Messages[0].ID != events[0].StreamID {
		t.Fatalf("gateway XREAD: %v, %v", read, err)
	}
	for _, kind := range []string{"product", "inventory", "order", "billing", "email"} {
		allowed(t, gw.XRead(ctx, &redis.XReadArgs{Streams: []string{"events:{" + kind + "}", "$"}, Block: time.Millisecond}).Err(), "gateway XREAD BLOCK "+kind)
	}
	// What /events replays on a resume (Store.Replay), before it follows.
	replayed, _, err := eventstore.New(gw, "").Read(ctx, "customer", "0", 10)
	if err != nil || len(replayed) != 1 || replayed[0].StreamID != events[0].StreamID {
		t.Fatalf("gateway reads the stream through the store: %v, %v", replayed, err)
	}
	info, err := eventstore.New(gw, "").Info(ctx, "customer") // XINFO STREAM, XINFO GROUPS, XLEN of the dead letters
	if err != nil || info.Length != 1 || len(info.Groups) != 1 || info.Groups[0].Pending != 1 || info.Groups[0].DeadLetters != 1 {
		t.Fatalf("gateway reads the stream's info: %+v, %v", info, err)
	}
	consumers, err := gw.XInfoConsumers(ctx, "events:{customer}", "crm").Result()
	if err != nil || len(consumers) != 1 || consumers[0].Name != "crm-1" {
		t.Fatalf("gateway XINFO CONSUMERS: %v, %v", consumers, err)
	}

	refused(t, gw.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "crm", Consumer: "gw", Streams: []string{"events:{customer}", ">"}, Block: -1}).Err(), "gateway XREADGROUP")
	refused(t, gw.XAck(ctx, "events:{customer}", "crm", events[0].StreamID).Err(), "gateway XACK")
	refused(t, gw.XGroupCreate(ctx, "events:{customer}", "gw", "0").Err(), "gateway XGROUP CREATE")
	refused(t, gw.XGroupDelConsumer(ctx, "events:{customer}", "crm", "crm-1").Err(), "gateway XGROUP DELCONSUMER")
	refused(t, gw.XClaim(ctx, &redis.XClaimArgs{Stream: "events:{customer}", Group: "crm", Consumer: "gw", Messages: []string{events[0].StreamID}}).Err(), "gateway XCLAIM")
	refused(t, gw.XDel(ctx, "events:{customer}", events[0].StreamID).Err(), "gateway XDEL")
	refused(t, gw.XTrimMaxLen(ctx, "events:{customer}", 0).Err(), "gateway XTRIM")
	refused(t, gw.XAdd(ctx, &redis.XAddArgs{Stream: "events:{customer}:dead:crm", Values: []any{"a", "b"}}).Err(), "gateway XADD dead letters")
	refused(t, gw.XRange(ctx, "events:{customer}:dead:crm", "-", "+").Err(), "gateway XRANGE dead letters")
	refused(t, gw.XRead(ctx, &redis.XReadArgs{Streams: []string{"{customer}:customer_ids", "0-0"}, Block: -1}).Err(), "gateway XREAD outside events:*")
}

// The event store's own paths: an owner appends with its cache update in one
// script, and nobody else can.
func TestOwnersAppendThroughTheEventStore(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	cacheOf := func(user string) *entitycache.Cache {
		return entitycache.New(store(s.client(t, user)))
	}
	customers := cacheOf("customer")
	c := shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}
	if _, err := customers.Commit(ctx, shop.Customers.Kind.Change(shop.CustomerCreated, c, eventstore.NoEntity)); err != nil {
		t.Fatalf("customer appends a customer: %v", err)
	}
	got, _, err := shop.Customers.Get(ctx, cacheOf("gateway"), c.ID)
	if err != nil || got == nil || got.Name != "Ada" {
		t.Fatalf("the gateway reads %v, %v", got, err)
	}
	if page, _, err := shop.Customers.ListPage(ctx, cacheOf("gateway"), entitycache.Page{Limit: 10}); err != nil || len(page) != 1 {
		t.Fatalf("the gateway pages %v, %v", page, err)
	}
	o := shop.Order{ID: uuid.NewString(), CustomerID: c.ID, ProductIDs: []string{uuid.NewString()}}
	_, err = customers.Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity))
	refused(t, err, "customer appends an order")
	if _, err := cacheOf("order").Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity)); err != nil {
		t.Fatalf("order appends an order: %v", err)
	}
	stream := store(nil).StreamKey(store(nil).PartitionOf("order", o.ID))
	n, err := s.client(t, "ops").XLen(ctx, stream).Result()
	if err != nil || n != 1 {
		t.Fatalf("%s has %d entries (%v), want 1", stream, n, err)
	}
}

// A command sent again with its Idempotency-Key asks whether its first try
// committed (Kind.Done): the owner may do that with its own rights.
func TestAnOwnerFindsWhatItsKeyedCommandCommitted(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := eventstore.WithIdempotencyKey(context.Background(), "PUT /customer/1 key-1")
	customers := entitycache.New(store(s.client(t, "customer")))
	c := shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}
	done, err := shop.Customers.Kind.Done(ctx, customers, c.ID, shop.CustomerCreated)
	if err != nil || done {
		t.Fatalf("before the commit: done %v, %v", done, err)
	}
	if _, err := customers.Commit(ctx, shop.Customers.Kind.Change(shop.CustomerCreated, c, eventstore.NoEntity)); err != nil {
		t.Fatalf("customer appends a customer: %v", err)
	}
	done, err = shop.Customers.Kind.Done(ctx, customers, c.ID, shop.CustomerCreated)
	if err != nil || !done {
		t.Fatalf("after the commit: done %v, %v; want true", done, err)
	}
}

// An append with a deadline reads Redis's clock (TIME) in the script: every
// owner may, and a deadline past refuses the append with ErrTooLate, not
// with a refusal of the ACL.
func TestOwnersAppendWithADeadline(t *testing.T) {
	t.Parallel()
	s := start(t)
	orders := entitycache.New(store(s.client(t, "order")))
	o := shop.Order{ID: uuid.NewString(), CustomerID: uuid.NewString(), ProductIDs: []string{uuid.NewString()}}
	ctx := eventstore.AppendBy(context.Background(), time.Now().Add(time.Minute))
	if _, err := orders.Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity)); err != nil {
		t.Fatalf("order appends an order by a deadline: %v", err)
	}
	o.ID = uuid.NewString()
	ctx = eventstore.AppendBy(context.Background(), time.Now().Add(-time.Second))
	if _, err := orders.Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity)); !errors.Is(err, eventstore.ErrTooLate) {
		t.Fatalf("order appends an order past its deadline: %v, want ErrTooLate", err)
	}
}

// An owner may run WAIT after its appends (REDIS_MIN_REPLICAS), and the
// archive after its reads: with no replica here, each is ErrNotReplicated,
// the WAIT's own answer, not refused for want of the right.
func TestOwnersWaitForReplicas(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	waitingStore := func(user string) *eventstore.Store {
		return eventstore.New(s.client(t, user), "",
			eventstore.WithPartitions(redistest.Partitions()), eventstore.WithReplicas(1, 10*time.Millisecond))
	}
	waiting := func(user string) *entitycache.Cache { return entitycache.New(waitingStore(user)) }
	checks := map[string]error{}
	_, checks["customer"] = waiting("customer").Commit(ctx, shop.Customers.Kind.Change(shop.CustomerCreated,
		shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}, eventstore.NoEntity))
	_, checks["order"] = waiting("order").Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated,
		shop.Order{ID: uuid.NewString(), CustomerID: uuid.NewString(), ProductIDs: []string{uuid.NewString()}}, eventstore.NoEntity))
	_, checks["msg"] = waiting("msg").Commit(ctx, shop.Emails.Kind.Change(shop.EmailSent,
		shop.Email{ID: uuid.NewString(), Key: "k", Msg: "hi", To: "ada@example.com"}, eventstore.NoEntity))
	// The archive reads what a replica has: XREADGROUP, then WAIT (Store.ReadGroup).
	stream := "events:{customer}"
	if err := s.client(t, "ops").XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"k", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.client(t, "archive").XGroupCreate(ctx, stream, "archive", "0").Err(); err != nil {
		t.Fatal(err)
	}
	_, checks["archive"] = waitingStore("archive").ReadGroup(ctx, &redis.XReadGroupArgs{Group: "archive", Consumer: "a", Streams: []string{stream, ">"}, Count: 10})
	for user, err := range checks {
		if !errors.Is(err, eventstore.ErrNotReplicated) || !strings.Contains(err.Error(), "0 of 1 replicas") {
			t.Errorf("%s waits for a replica: %v, want ErrNotReplicated by the WAIT's answer", user, err)
		}
	}
}

// Redis replays its AOF, where a script's writes are a MULTI/EXEC, with the
// rights of the default user: what the services wrote must come back whole
// after a restart, though nobody may log in as default.
func TestARestartKeepsWhatTheUsersWrote(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	customers := entitycache.New(store(s.client(t, "customer")))
	c := shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}
	if _, err := customers.Commit(ctx, shop.Customers.Kind.Change(shop.CustomerCreated, c, eventstore.NoEntity)); err != nil {
		t.Fatal(err)
	}
	s.stop()
	s.start(t)
	got, _, err := shop.Customers.Get(ctx, entitycache.New(store(s.client(t, "gateway"))), c.ID)
	if err != nil || got == nil || got.Name != "Ada" {
		t.Fatalf("after the restart the gateway reads %v, %v", got, err)
	}
	stream := store(nil).StreamKey(store(nil).PartitionOf("customer", c.ID))
	if n, err := s.client(t, "ops").XLen(ctx, stream).Result(); err != nil || n != 1 {
		t.Fatalf("%s has %d entries (%v), want 1", stream, n, err)
	}
	anon := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Get(ctx, "{customer}:customer_ids").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("GET without a user after the restart: %v, want NOAUTH", err)
	}
}

// CRM reads both its streams through its group, dead-letters what keeps
// failing, and writes nothing else.
func TestCRMWorksItsGroupAndWritesNothingElse(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	customers := entitycache.New(store(s.client(t, "customer")))
	orders := entitycache.New(store(s.client(t, "order")))
	c := shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}
	o := shop.Order{ID: uuid.NewString(), CustomerID: c.ID, ProductIDs: []string{uuid.NewString()}}
	if _, err := customers.Commit(ctx, shop.Customers.Kind.Change(shop.CustomerCreated, c, eventstore.NoEntity)); err != nil {
		t.Fatal(err)
	}
	if _, err := orders.Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity)); err != nil {
		t.Fatal(err)
	}

	crm := s.client(t, "crm")
	var handled atomic.Int64
	consumer, err := store(crm).NewConsumer(eventstore.ConsumerConfig{
		Group: "crm", Name: "crm-1", Streams: append(partitions("customer"), partitions("order")...), Block: 50 * time.Millisecond,
		MaxDeliveries: 1, RetryDelay: time.Millisecond, ClaimIdle: 100 * time.Millisecond,
		Handler: func(_ context.Context, e eventstore.Event) error {
			handled.Add(1)
			if e.Type == shop.OrderCreated {
				return errors.New("poison")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	oneDeadLetter(t, s, consumer, "crm", "crm-1", "customer", &handled)
	if st, err := consumer.Stats(ctx); err != nil || len(st.Streams) != 2*redistest.Partitions() {
		t.Errorf("crm's stats: %+v, %v", st, err)
	}

	bg := context.Background()
	refused(t, crm.XAdd(bg, &redis.XAddArgs{Stream: "events:{order}", Values: []any{"a", "b"}}).Err(), "crm XADD events:{order}")
	refused(t, crm.XAdd(bg, &redis.XAddArgs{Stream: "events:{order}:dead:billing", Values: []any{"a", "b"}}).Err(), "crm XADD billing's dead letters")
	refused(t, crm.HSet(bg, "{order}:order_ids", "x", "1").Err(), "crm HSET {order} cache")
	refused(t, crm.XGroupDestroy(bg, "events:{order}", "billing").Err(), "crm XGROUP DESTROY")
	refused(t, crm.Eval(bg, "return redis.call('XADD', KEYS[1], '*', 'a', 'b')", []string{"events:{order}"}).Err(), "crm XADD from a script")
	billing := s.client(t, "billing")
	refused(t, billing.XAdd(bg, &redis.XAddArgs{Stream: "events:{order}", Values: []any{"a", "b"}}).Err(), "billing XADD events:{order}")
	refused(t, billing.XAdd(bg, &redis.XAddArgs{Stream: "events:{order}:dead:crm", Values: []any{"a", "b"}}).Err(), "billing XADD crm's dead letters")
}

// Inventory follows the order events through its group: it reads the order
// cache, dead-letters what keeps failing, and writes no order key.
// oneDeadLetter runs a consumer of group until it has handled two events or
// more, acked them all on stream and dead-lettered one event of the order
// stream, then stops it.
func oneDeadLetter(t *testing.T, s *server, consumer *eventstore.Consumer, group, name, stream string, handled *atomic.Int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	ops := s.client(t, "ops")
	st := store(ops)
	redistest.Eventually(t, 10*time.Second, group+"'s events acked and one dead-lettered", func() bool {
		dead, pending := int64(0), int64(0)
		for _, part := range partitions("order") {
			dead += ops.XLen(ctx, st.DeadLetterKey(part, group)).Val()
		}
		for _, part := range partitions(stream) {
			p, err := ops.XPending(ctx, st.StreamKey(part), group).Result()
			if err != nil {
				return false
			}
			pending += p.Count
			if ops.ZScore(ctx, st.SeenKey(part, group), name).Err() != nil {
				return false // no claim pass yet, which marks it seen
			}
		}
		return dead == 1 && pending == 0 && handled.Load() >= 2
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("%s's consumer: %v", group, err)
	}
	// A command its user may not run would have ended a session.
	if st, err := consumer.Stats(context.Background()); err != nil || st.Counters.Reconnections != 0 {
		t.Errorf("%s's consumer: %+v, %v", group, st.Counters, err)
	}
}

func TestInventoryWorksItsGroupOnTheOrders(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	orders := entitycache.New(store(s.client(t, "order")))
	good := shop.Order{ID: uuid.NewString(), CustomerID: uuid.NewString(), ProductIDs: []string{uuid.NewString()}}
	poison := shop.Order{ID: uuid.NewString(), CustomerID: uuid.NewString(), ProductIDs: []string{uuid.NewString()}}
	for _, o := range []shop.Order{good, poison} {
		if _, err := orders.Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity)); err != nil {
			t.Fatal(err)
		}
	}

	inventory := s.client(t, "inventory")
	cache := entitycache.New(store(inventory))
	var read atomic.Int64
	consumer, err := store(inventory).NewConsumer(eventstore.ConsumerConfig{
		Group: "inventory", Name: "inventory-1", Streams: partitions("order"), Block: 50 * time.Millisecond,
		MaxDeliveries: 1, RetryDelay: time.Millisecond, ClaimIdle: 100 * time.Millisecond,
		Handler: func(ctx context.Context, e eventstore.Event) error {
			if o, _, err := shop.Orders.Get(ctx, cache, e.EntityID); err != nil || o == nil {
				return errors.Join(err, errors.New("order not read"))
			}
			read.Add(1)
			if e.EntityID == poison.ID {
				return errors.New("poison")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	oneDeadLetter(t, s, consumer, "inventory", "inventory-1", "order", &read)

	bg := context.Background()
	r := shop.Reservation{ID: good.ID, ProductIDs: good.ProductIDs}
	if _, err := cache.Commit(bg, shop.Reservations.Change(shop.ReservationCreated, r, eventstore.NoEntity)); err != nil {
		t.Errorf("inventory commits a reservation: %v", err)
	}
	refused(t, inventory.XAdd(bg, &redis.XAddArgs{Stream: "events:{order}", Values: []any{"a", "b"}}).Err(), "inventory XADD events:{order}")
	refused(t, inventory.XAdd(bg, &redis.XAddArgs{Stream: "events:{order}:dead:crm", Values: []any{"a", "b"}}).Err(), "inventory XADD crm's dead letters")
	refused(t, inventory.HSet(bg, "{order}:order_ids", "x", "1").Err(), "inventory HSET {order} cache")
	refused(t, inventory.XGroupDestroy(bg, "events:{order}", "crm").Err(), "inventory XGROUP DESTROY")
}

// The archive reads every stream through its group into PostgreSQL and
// trims each below what every group is done with, reading the dead letters'
// originals; it can append, delete or change nothing else.
func TestTheArchiveArchivesAndTrimsAndWritesNothingElse(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	customers := entitycache.New(store(s.client(t, "customer")))
	orders := entitycache.New(store(s.client(t, "order")))
	mails := entitycache.New(store(s.client(t, "msg")))
	var last eventstore.Event // of the customers
	for i := range 4 {
		c := shop.Customer{ID: uuid.NewString(), Name: "Ada", Email: "ada@example.com"}
		o := shop.Order{ID: uuid.NewString(), CustomerID: c.ID, ProductIDs: []string{uuid.NewString()}}
		mail, err := shop.NewEmail(c.Email, "Welcome", "welcome-"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		events, err := customers.Commit(ctx, shop.Customers.Kind.Change(shop.CustomerCreated, c, eventstore.NoEntity))
		if err == nil {
			last = events[0]
			_, err = orders.Commit(ctx, shop.Orders.Kind.Change(shop.OrderCreated, o, eventstore.NoEntity))
		}
		if err == nil {
			_, err = mails.Commit(ctx, shop.Emails.Kind.Change(shop.EmailSent, mail, eventstore.NoEntity))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// A group crm done with every customer, and a dead letter of its last.
	ops := s.client(t, "ops")
	for _, part := range partitions("customer") {
		if err := ops.XGroupCreateMkStream(ctx, store(ops).StreamKey(part), "crm", "$").Err(); err != nil {
			t.Fatal(err)
		}
	}
	lastPart := store(nil).PartitionOf("customer", last.EntityID)
	if err := ops.XAdd(ctx, &redis.XAddArgs{Stream: store(ops).DeadLetterKey(lastPart, "crm"),
		Values: []any{eventstore.DeadLetterOriginal, last.StreamID}}).Err(); err != nil {
		t.Fatal(err)
	}

	rdb := s.client(t, "archive")
	var streams []string
	for _, kinds := range shop.Streams {
		streams = append(streams, partitions(entitycache.StreamOf(kinds[0]))...)
	}
	a := &archive.Archiver{DB: db, Store: store(rdb), Streams: streams, Name: "archive-1", Block: 50 * time.Millisecond}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	// A batch is acked after it is counted.
	redistest.Eventually(t, 30*time.Second, "12 events archived and acked", func() bool {
		for _, part := range streams {
			if p, err := ops.XPending(ctx, store(ops).StreamKey(part), archive.Group).Result(); err != nil || p.Count > 0 {
				return false
			}
		}
		return a.Rows() == 12
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("the archiver: %v", err)
	}
	for _, part := range streams {
		if _, err := archive.Trim(ctx, db, store(rdb), part, 0); err != nil {
			t.Errorf("archive trims %s: %v", part, err)
		}
		info, err := store(rdb).Info(ctx, part) // the metrics: XINFO STREAM, XINFO GROUPS, XLEN of the dead letters
		if err != nil {
			t.Errorf("archive reads the info of %s: %v", part, err)
		}
		// Each stream keeps its last entry, the watermark; the dead letter names it.
		if info.Length > 1 {
			t.Errorf("%s holds %d entries after the trim, want its last only", part, info.Length)
		}
	}
	if first, err := ops.XRangeN(ctx, store(ops).StreamKey(lastPart), "-", "+", 1).Result(); err != nil || len(first) != 1 || first[0].ID != last.StreamID {
		t.Errorf("%s begins with %v (%v), want the dead letter's original %s", lastPart, first, err, last.StreamID)
	}

	key, dead := store(nil).StreamKey(lastPart), store(nil).DeadLetterKey(lastPart, "crm")
	refused(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"a", "b"}}).Err(), "archive XADD "+key)
	refused(t, rdb.XDel(ctx, key, last.StreamID).Err(), "archive XDEL "+key)
	refused(t, rdb.XRange(ctx, key, "-", "+").Err(), "archive XRANGE "+key)
	refused(t, rdb.XClaim(ctx, &redis.XClaimArgs{Stream: key, Group: "crm", Consumer: "archive-1", Messages: []string{last.StreamID}}).Err(), "archive XCLAIM")
	refused(t, rdb.XGroupDestroy(ctx, key, "crm").Err(), "archive XGROUP DESTROY")
	refused(t, rdb.XGroupSetID(ctx, key, "crm", "0").Err(), "archive XGROUP SETID")
	refused(t, rdb.Del(ctx, key).Err(), "archive DEL "+key)
	refused(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: dead, Values: []any{"a", "b"}}).Err(), "archive XADD "+dead)
	refused(t, rdb.XTrimMaxLen(ctx, dead, 0).Err(), "archive XTRIM "+dead)
	refused(t, rdb.XDel(ctx, dead, "0-1").Err(), "archive XDEL "+dead)
	refused(t, rdb.XTrimMaxLen(ctx, "{customer}:customer_ids", 0).Err(), "archive XTRIM outside the streams")
	refused(t, rdb.HSet(ctx, "{customer}:versions", "x", "1").Err(), "archive HSET {customer}")
	refused(t, rdb.Eval(ctx, "return 1", []string{key}).Err(), "archive EVAL")
}

// On Redis Cluster, go-redis's cluster client asks a node for the slots'
// owners (CLUSTER SLOTS) and the commands' key positions (COMMAND), and
// follows ASK redirects (ASKING): every service's user may, and may not
// change the cluster. Three masters through the entrypoint, as in
// docker-compose.cluster.yml.
func TestEveryServiceUsesRedisCluster(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip(err)
	}
	passwords := newPasswords() // one set of users for the cluster
	var nodes []*server
	var addrs []string
	for range 3 {
		s := startWith(t, passwords, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		nodes, addrs = append(nodes, s), append(addrs, s.addr)
	}
	create := exec.Command("redis-cli", append(append([]string{"--user", "ops", "--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	create.Env = append(os.Environ(), "REDISCLI_AUTH="+passwords["ops"])
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	for _, s := range nodes {
		ops := s.client(t, "ops")
		redistest.Eventually(t, 10*time.Second, "cluster_state:ok on "+s.addr, func() bool {
			info, _ := ops.ClusterInfo(ctx).Result()
			return strings.Contains(info, "cluster_state:ok")
		})
	}
	for _, user := range users[1:] {
		node := nodes[0].client(t, user)
		allowed(t, node.ClusterSlots(ctx).Err(), user+" CLUSTER SLOTS")
		allowed(t, node.ClusterShards(ctx).Err(), user+" CLUSTER SHARDS")
		allowed(t, node.Command(ctx).Err(), user+" COMMAND")
		allowed(t, node.Do(ctx, "asking").Err(), user+" ASKING")
		allowed(t, node.ReadOnly(ctx).Err(), user+" READONLY")
		refused(t, node.ClusterResetSoft(ctx).Err(), user+" CLUSTER RESET")
		refused(t, node.ClusterNodes(ctx).Err(), user+" CLUSTER NODES")

		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Username: user, Password: passwords[user], MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		allowed(t, rdb.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }), user+" PING every master")
	}
	// A key of each entity type, on the node of its slot, as its owner.
	for kind, user := range map[string]string{"customer": "customer", "product": "product", "order": "order", "email": "msg"} {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Username: user, Password: passwords[user], MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		allowed(t, rdb.HSet(ctx, "{"+kind+"}:"+kind+"_entity:1", "id", "1").Err(), user+" HSET on its slot's node")
	}
}

// store is an event store of a user's client, with the partitions the
// tests run with (STREAM_PARTITIONS), whose keys the ACL must allow too.
func store(rdb redis.UniversalClient) *eventstore.Store {
	return eventstore.New(rdb, "", eventstore.WithPartitions(redistest.Partitions()))
}

// partitions are the streams of an entity type.
func partitions(typ string) []string { return store(nil).Partitions(typ) }
