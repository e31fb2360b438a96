package entitycache

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// codec maps an entity struct to the article's layout and back: its scalar
// fields to one hash, each []string field to a list of its own. Fields are
// named by their JSON tags, so that the hash reads like the entity's JSON.
// It is the one place that knows the layout field by field.
type codec struct {
	id      int     // index of scalars holding the id
	scalars []field // string, int64 and bool fields, in declaration order
	lists   []field // []string fields
	names   []string
	fields  []any // names, as HMGET's arguments
}

type field struct {
	name  string
	index int
	kind  reflect.Kind
}

var codecs sync.Map // reflect.Type -> *codec

// codecOf returns the codec of T, built once. T must be a struct of string,
// int64, bool and []string fields, with a string field tagged `json:"id"`;
// anything else is a programming error and panics at the first use.
func codecOf[T any]() *codec {
	typ := reflect.TypeFor[T]()
	if c, ok := codecs.Load(typ); ok {
		return c.(*codec)
	}
	c := &codec{id: -1}
	if typ.Kind() != reflect.Struct {
		panic(fmt.Sprintf("entitycache: %s is not a struct", typ))
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			panic(fmt.Sprintf("entitycache: field %s.%s has no JSON name", typ, f.Name))
		}
		switch {
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
			c.lists = append(c.lists, field{name, i, reflect.Slice})
		case f.Type.Kind() == reflect.String, f.Type.Kind() == reflect.Int64, f.Type.Kind() == reflect.Bool:
			if name == "id" && f.Type.Kind() == reflect.String {
				c.id = len(c.scalars)
			}
			c.scalars = append(c.scalars, field{name, i, f.Type.Kind()})
			c.names = append(c.names, name)
			c.fields = append(c.fields, name)
		default:
			panic(fmt.Sprintf("entitycache: field %s.%s is a %s, want string, int64, bool or []string", typ, f.Name, f.Type))
		}
	}
	if c.id < 0 {
		panic(fmt.Sprintf("entitycache: %s has no string field tagged json:\"id\"", typ))
	}
	codecs.Store(typ, c)
	return c
}

// id is the entity's id.
func (c *codec) idOf(v reflect.Value) string { return c.text(v, c.id) }

// text is the value of the i-th scalar field, a string field.
func (c *codec) text(v reflect.Value, i int) string { return v.Field(c.scalars[i].index).String() }

// stringField is the index in scalars of the string field named name, -1 for
// no name; a name that is no string field is a programming error and panics.
func (c *codec) stringField(name string) int {
	if name == "" {
		return -1
	}
	for i, f := range c.scalars {
		if f.name == name && f.kind == reflect.String {
			return i
		}
	}
	panic(fmt.Sprintf("entitycache: no string field %q to index", name))
}

// hash is the HSET arguments of the scalar fields: name, value, name, value…
func (c *codec) hash(v reflect.Value) []any {
	out := make([]any, 0, 2*len(c.scalars))
	for _, f := range c.scalars {
		fv := v.Field(f.index)
		var s string
		switch f.kind {
		case reflect.String:
			s = fv.String()
		case reflect.Int64:
			s = strconv.FormatInt(fv.Int(), 10)
		case reflect.Bool:
			s = strconv.FormatBool(fv.Bool())
		}
		out = append(out, f.name, s)
	}
	return out
}

// list is the items of the i-th list field.
func (c *codec) list(v reflect.Value, i int) []string {
	return v.Field(c.lists[i].index).Interface().([]string)
}

// decode sets v from the HMGET of the scalar fields (in c.names order, a
// field not there being "") and the LRANGE of each list. It reports false
// for an entity that is not in the cache: its hash has no id.
func (c *codec) decode(v reflect.Value, hash []string, lists []*redis.StringSliceCmd) (bool, error) {
	if hash[c.id] == "" {
		return false, nil
	}
	for i, f := range c.scalars {
		s := hash[i]
		fv := v.Field(f.index)
		switch f.kind {
		case reflect.String:
			fv.SetString(s)
		case reflect.Int64:
			if s == "" {
				continue
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return false, fmt.Errorf("field %s: %w", f.name, err)
			}
			fv.SetInt(n)
		case reflect.Bool:
			fv.SetBool(s == "true")
		}
	}
	for i, f := range c.lists {
		items := lists[i].Val()
		if items == nil {
			items = []string{}
		}
		// Through a pointer: reflect.ValueOf(items) would allocate.
		*v.Field(f.index).Addr().Interface().(*[]string) = items
	}
	return true, nil
}
