package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"
)

var client = &http.Client{Timeout: 30 * time.Second}

// fetch GETs url and answers its body; any status but 200 is an error.
func fetch(url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, err
}

// create POSTs items to url and answers the new ids.
func create(url string, items any) ([]string, error) {
	body, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, answer)
	}
	var ids []string
	return ids, json.Unmarshal(answer, &ids)
}

// createCustomers creates n customers with one POST of a list to url.
func createCustomers(url string, n int) error {
	items := make([]map[string]string, n)
	for i := range items {
		items[i] = map[string]string{"name": fmt.Sprintf("Customer %d", i), "email": fmt.Sprintf("customer%d@example.com", i)}
	}
	_, err := create(url, items)
	return err
}

// seedCustomers makes the gateway's shop hold n customers, if it holds
// fewer, in lists of at most 1,000 (MAX_BATCH).
func seedCustomers(gateway string, n int) error {
	var have []any
	body, err := fetch(gateway + "/customers")
	if err == nil {
		err = json.Unmarshal(body, &have)
	}
	for more := n - len(have); err == nil && more > 0; more -= 1000 {
		err = createCustomers(gateway+"/customers", min(more, 1000))
	}
	return err
}

// seedCollections gives every collection of /report a few entities: 5
// products with their stock, 5 orders of the first customers, 2 billings.
func seedCollections(gateway string) error {
	var customers []struct{ ID string }
	body, err := fetch(gateway + "/customers")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &customers); err != nil || len(customers) < 5 {
		return fmt.Errorf("seed: %d customers (%v)", len(customers), err)
	}
	var products, stock, orders, billings []map[string]any
	for i := range 5 {
		products = append(products, map[string]any{"name": fmt.Sprintf("Product %d", i), "price": 100 * (i + 1)})
	}
	pids, err := create(gateway+"/products", products)
	if err != nil {
		return err
	}
	for _, p := range pids {
		stock = append(stock, map[string]any{"product_id": p, "amount": 1000})
	}
	if _, err := create(gateway+"/inventory", stock); err != nil {
		return err
	}
	for i := range 5 {
		orders = append(orders, map[string]any{"customer_id": customers[i].ID, "product_ids": []string{pids[i], pids[(i+1)%5]}})
	}
	oids, err := create(gateway+"/orders", orders)
	if err != nil {
		return err
	}
	for _, o := range oids[:2] {
		billings = append(billings, map[string]any{"order_id": o})
	}
	_, err = create(gateway+"/billings", billings)
	return err
}

// sameAnswers checks that the gateway and the bare program answer the same
// JSON: the yardstick does the same work.
func sameAnswers(gateway, bare string) error {
	var answers [2]any
	for i, url := range []string{gateway, bare} {
		body, err := fetch(url)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(body, &answers[i]); err != nil {
			return fmt.Errorf("%s: %w", url, err)
		}
	}
	if !reflect.DeepEqual(answers[0], answers[1]) {
		return fmt.Errorf("the bare program answers otherwise than the gateway:\n%s: %.300v\n%s: %.300v", gateway, answers[0], bare, answers[1])
	}
	return nil
}
