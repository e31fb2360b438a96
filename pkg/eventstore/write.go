package eventstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Write is a Redis command run in the same atomic step as an append, e.g. an
// HSET of the entity cache. Its key must be in the stream's hash slot. The
// script checks every write before it runs the first, so a Write is one of
// the commands it knows the key type of: DEL (of Key alone), HSET, HDEL,
// SADD, SREM, ZADD (score, member pairs), ZREM, RPUSH or LPUSH.
type Write struct {
	Cmd  string
	Key  string
	Args []any
}

// maxArgs bounds the args of one command a script runs with unpack, which
// fails on some thousands of values. It is even, so that an HSET is cut
// between pairs.
const maxArgs = 1000

// EncodeWrites turns writes into the form scripts run with
// redis.call(unpack(w)), and lists their keys, which a script must declare.
// A write of more than maxArgs args becomes several writes of the same
// command, which for a list of items or pairs changes nothing. Every arg
// becomes a string, as cjson would read a number as a double.
func EncodeWrites(ws []Write) (writes [][]any, keys []string) {
	writes = make([][]any, 0, len(ws)) // [], not null, in JSON
	for _, w := range ws {
		keys = append(keys, w.Key)
		args := w.Args
		for {
			n := min(len(args), maxArgs)
			cmd := make([]any, 0, 2+n)
			cmd = append(cmd, w.Cmd, w.Key)
			for _, a := range args[:n] {
				cmd = append(cmd, text(a))
			}
			writes = append(writes, cmd)
			if args = args[n:]; len(args) == 0 {
				break
			}
		}
	}
	return writes, keys
}

// text is an arg as the string Redis would receive.
func text(a any) string {
	switch a := a.(type) {
	case string:
		return a
	case []byte:
		return string(a)
	}
	return fmt.Sprint(a)
}

// appendArgs are the KEYS and ARGV of the append script.
type appendArgs struct {
	keys  []string
	argv  []any
	index map[string]int // of the writes' keys in keys
}

// group appends a commit's records: its length, its marker's time to live
// in seconds, its deadline in Unix milliseconds (0: none, see AppendBy),
// then its events.
func (a *appendArgs) group(recs []Record, ttl time.Duration, by int64) {
	head := len(a.argv)
	a.argv = append(a.argv, 0, int64(ttl/time.Second), by)
	for i := range recs {
		r := &recs[i]
		e := &r.Event
		if e.Schema == 0 {
			e.Schema = SchemaVersion(e.Type)
		}
		pairs := len(e.Meta)
		if e.Schema > 1 {
			pairs++
		}
		a.argv = append(a.argv, e.EntityID, r.Expected, e.ID, e.Type, e.EntityType,
			e.Time.UTC().Format(time.RFC3339Nano), string(e.Entity), 2*pairs)
		for k, v := range e.Meta {
			a.argv = append(a.argv, metaPrefix+k, v)
		}
		if e.Schema > 1 {
			a.argv = append(a.argv, fieldSchema, strconv.Itoa(e.Schema))
		}
		a.argv = append(a.argv, 0)
		count := len(a.argv) - 1
		for _, w := range r.Writes {
			for args := w.Args; ; {
				n := min(len(args), maxArgs)
				a.write(w.Cmd, w.Key, args[:n])
				a.argv[count] = a.argv[count].(int) + 1
				if args = args[n:]; len(args) == 0 {
					break
				}
			}
		}
	}
	a.argv[head] = len(a.argv) - head - 1
}

// write appends a write of args, each as text.
func (a *appendArgs) write(cmd, key string, args []any) {
	i, ok := a.index[key]
	if !ok {
		if a.index == nil {
			a.index = map[string]int{}
		}
		i = len(a.keys)
		a.index[key] = i
		a.keys = append(a.keys, key)
	}
	a.argv = append(a.argv, strings.ToUpper(cmd), i+1, len(args))
	for _, arg := range args {
		a.argv = append(a.argv, text(arg))
	}
}
