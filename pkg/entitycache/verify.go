package entitycache

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ordershop/ordershop/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// Diff compares the cache of the kinds, which all live in one stream, with
// what applying the stream gives, key for key: the sets and sorted sets of
// ids, the entities' hashes and lists, the index, and the versions hash,
// which commands expect and the cache holds. It returns one line per key that
// differs, none when they agree. It reads the stream and the cache one after
// the other, so it tells the truth on a quiet system only: a commit landing
// meanwhile is a difference.
func (c *Cache) Diff(ctx context.Context, kinds ...Projection) ([]string, error) {
	var diffs []string
	for _, part := range c.store.Partitions(kinds[0].kind().stream) {
		d, err := c.diff(ctx, part, kinds)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, d...)
	}
	return diffs, nil
}

// diff is Diff of one partition of the kinds' stream.
func (c *Cache) diff(ctx context.Context, stream string, kinds []Projection) ([]string, error) {
	want := keyspace{}
	versions := c.store.Key(stream, "versions")
	err := c.store.Replay(ctx, stream, "0", func(events []eventstore.Event) error {
		for _, e := range events {
			want.run([]any{"HSET", versions, e.EntityID, strconv.FormatInt(e.Version, 10)})
			_, ws, err := c.writesOf(e, kinds)
			if err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			}
			cmds, _ := eventstore.EncodeWrites(ws)
			for _, cmd := range cmds {
				want.run(cmd)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The keys to compare: those the stream gives and those the cache has.
	keys := map[string]bool{versions: true}
	for k := range want {
		keys[k] = true
	}
	for _, k := range kinds {
		found, err := c.scanPrefix(ctx, c.store.Key(stream, k.kind().name+"_"))
		if err != nil {
			return nil, err
		}
		for _, key := range found {
			keys[key] = true
		}
	}
	var diffs []string
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		got, err := c.readKey(ctx, key)
		if err != nil {
			return nil, err
		}
		if w := want[key].String(); got != w {
			diffs = append(diffs, fmt.Sprintf("%s: the cache has %s, the stream gives %s", key, short(got), short(w)))
		}
	}
	return diffs, nil
}

// scanPrefix lists the keys that start with prefix; a test's key prefix may
// hold characters that are special in a pattern.
func (c *Cache) scanPrefix(ctx context.Context, prefix string) ([]string, error) {
	glob := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return c.store.Scan(ctx, glob.Replace(prefix)+"*")
}

// readKey is a key's content as value.String renders it.
func (c *Cache) readKey(ctx context.Context, key string) (string, error) {
	rdb := c.store.Redis()
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		return "", err
	}
	v := &value{typ: typ, members: map[string]string{}}
	switch typ {
	case "none":
		return (*value)(nil).String(), nil
	case "hash":
		v.members, err = rdb.HGetAll(ctx, key).Result()
	case "set":
		var ms []string
		ms, err = rdb.SMembers(ctx, key).Result()
		for _, m := range ms {
			v.members[m] = ""
		}
	case "zset":
		var zs []redis.Z
		zs, err = rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		for _, z := range zs {
			v.members[z.Member.(string)] = strconv.FormatFloat(z.Score, 'f', -1, 64)
		}
	case "list":
		v.list, err = rdb.LRange(ctx, key, 0, -1).Result()
	}
	return v.String(), err
}

// keyspace is Redis in memory, as far as the cache's writes go.
type keyspace map[string]*value

// value is one key: a hash (field -> value), a set (member -> ""), a sorted
// set (member -> score) or a list.
type value struct {
	typ     string
	members map[string]string
	list    []string
}

// run runs one of the commands writes gives: DEL, HSET, SADD, SREM, ZADD,
// ZREM, RPUSH, as a script would. Like Redis, it drops a key left empty.
func (ks keyspace) run(cmd []any) {
	name, key, args := cmd[0].(string), cmd[1].(string), cmd[2:]
	v := ks[key]
	if v == nil {
		v = &value{members: map[string]string{}}
		ks[key] = v
	}
	arg := func(i int) string { return args[i].(string) }
	switch name {
	case "DEL":
		delete(ks, key)
		return
	case "HSET":
		v.typ = "hash"
		for i := 0; i+1 < len(args); i += 2 {
			v.members[arg(i)] = arg(i + 1)
		}
	case "SADD":
		v.typ = "set"
		for i := range args {
			v.members[arg(i)] = ""
		}
	case "ZADD":
		v.typ = "zset"
		for i := 0; i+1 < len(args); i += 2 {
			v.members[arg(i+1)] = arg(i)
		}
	case "SREM", "ZREM":
		for i := range args {
			delete(v.members, arg(i))
		}
	case "RPUSH":
		v.typ = "list"
		for i := range args {
			v.list = append(v.list, arg(i))
		}
	default:
		panic("entitycache: Diff cannot run " + name)
	}
	if len(v.members) == 0 && len(v.list) == 0 {
		delete(ks, key)
	}
}

// String renders a value the same way whichever order Redis answered in.
func (v *value) String() string {
	if v == nil {
		return "nothing"
	}
	items := v.list
	if v.typ != "list" {
		items = nil
		for _, m := range slices.Sorted(maps.Keys(v.members)) {
			if s := v.members[m]; v.typ == "hash" || v.typ == "zset" {
				items = append(items, m+"="+s)
			} else {
				items = append(items, m)
			}
		}
	}
	return v.typ + " [" + strings.Join(items, " ") + "]"
}

// short cuts a long value in a report line.
func short(s string) string {
	if len(s) > 300 {
		return s[:300] + "…]"
	}
	return s
}
