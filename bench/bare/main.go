// Command bare is the yardstick of the gateway's reads: the least a plain Go
// program does to answer GET /customers and GET /report from the entity
// cache. net/http, go-redis and encoding/json; no router, no middleware, no
// logging, no versions: the ids' set, then one pipeline of HGETALL (and
// LRANGE for an order's products), and the JSON the gateway answers, byte
// for byte. make bench drives it beside the gateway; it is no part of the
// shop.
//
//	ADDR=127.0.0.1:7000 REDIS_URL=redis://127.0.0.1:6379/0 KEY_PREFIX= bare
package main

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The entities as the gateway answers them, fields in the order of their
// JSON names.
type (
	billing struct {
		Done    bool   `json:"done"`
		ID      string `json:"id"`
		OrderID string `json:"order_id"`
	}
	customer struct {
		Email string `json:"email"`
		ID    string `json:"id"`
		Name  string `json:"name"`
	}
	inventory struct {
		Amount    int64  `json:"amount"`
		ID        string `json:"id"`
		ProductID string `json:"product_id"`
	}
	order struct {
		CustomerID string   `json:"customer_id"`
		ID         string   `json:"id"`
		ProductIDs []string `json:"product_ids"`
	}
	product struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Price int64  `json:"price"`
	}
)

// report is GET /report's answer.
type report struct {
	Billings  []billing   `json:"billings"`
	Customers []customer  `json:"customers"`
	Inventory []inventory `json:"inventory"`
	Orders    []order     `json:"orders"`
	Products  []product   `json:"products"`
}

// newReport is a report with empty lists, which answer [] rather than null.
func newReport() report {
	return report{Billings: []billing{}, Customers: []customer{}, Inventory: []inventory{}, Orders: []order{}, Products: []product{}}
}

var kinds = []string{"billing", "customer", "inventory", "order", "product"}

func main() {
	opt, err := redis.ParseURL(env("REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		log.Fatal(err)
	}
	s := server{rdb: redis.NewClient(opt), prefix: os.Getenv("KEY_PREFIX")}
	http.HandleFunc("GET /customers", func(w http.ResponseWriter, r *http.Request) {
		ids, err := s.rdb.SMembers(r.Context(), s.key("customer", "customer_ids")).Result()
		if err != nil {
			fail(w, err)
			return
		}
		out := newReport()
		if err := s.read(r.Context(), map[string][]string{"customer": ids}, &out); err != nil {
			fail(w, err)
			return
		}
		write(w, out.Customers)
	})
	// Every collection in two round trips: the five sets, then every entity.
	http.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
		sets := make([]*redis.StringSliceCmd, len(kinds))
		_, err := s.rdb.Pipelined(r.Context(), func(p redis.Pipeliner) error {
			for i, k := range kinds {
				sets[i] = p.SMembers(r.Context(), s.key(k, k+"_ids"))
			}
			return nil
		})
		if err != nil {
			fail(w, err)
			return
		}
		ids := map[string][]string{}
		for i, k := range kinds {
			ids[k] = sets[i].Val()
		}
		out := newReport()
		if err := s.read(r.Context(), ids, &out); err != nil {
			fail(w, err)
			return
		}
		write(w, out)
	})
	log.Fatal(http.ListenAndServe(env("ADDR", "127.0.0.1:7000"), nil))
}

type server struct {
	rdb    *redis.Client
	prefix string
}

func (s server) key(kind, name string) string { return s.prefix + "{" + kind + "}:" + name }

// read reads the entities of each kind, in id order, in one pipeline, into
// out's lists.
func (s server) read(ctx context.Context, ids map[string][]string, out *report) error {
	hashes := map[string][]*redis.MapStringStringCmd{}
	var lists []*redis.StringSliceCmd // each order's product_ids
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for kind, kids := range ids {
			slices.Sort(kids)
			for _, id := range kids {
				key := s.key(kind, kind+"_entity:"+id)
				hashes[kind] = append(hashes[kind], p.HGetAll(ctx, key))
				if kind == "order" {
					lists = append(lists, p.LRange(ctx, key+":product_ids", 0, -1))
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for kind, cmds := range hashes {
		for i, cmd := range cmds {
			h := cmd.Val()
			if len(h) == 0 {
				continue // deleted between the two round trips
			}
			switch kind {
			case "billing":
				out.Billings = append(out.Billings, billing{Done: h["done"] == "true", ID: h["id"], OrderID: h["order_id"]})
			case "customer":
				out.Customers = append(out.Customers, customer{Email: h["email"], ID: h["id"], Name: h["name"]})
			case "inventory":
				amount, _ := strconv.ParseInt(h["amount"], 10, 64)
				out.Inventory = append(out.Inventory, inventory{Amount: amount, ID: h["id"], ProductID: h["product_id"]})
			case "order":
				out.Orders = append(out.Orders, order{CustomerID: h["customer_id"], ID: h["id"], ProductIDs: lists[i].Val()})
			case "product":
				price, _ := strconv.ParseInt(h["price"], 10, 64)
				out.Products = append(out.Products, product{ID: h["id"], Name: h["name"], Price: price})
			}
		}
	}
	return nil
}

func write(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
