package shop

import (
	"net/mail"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// A customer NewCustomer accepts has a name by the rules and an e-mail
// address that mail servers deliver to. Nothing panics.
func FuzzNewCustomer(f *testing.F) {
	f.Fuzz(func(t *testing.T, name, email string) {
		c, err := NewCustomer(name, email)
		if err != nil {
			return
		}
		checkName(t, c.Name)
		a, err := mail.ParseAddress(c.Email)
		at := strings.LastIndexByte(c.Email, '@')
		switch {
		case err != nil || a.Address != c.Email || a.Name != "":
			t.Fatalf("email %q accepted: it parses as %v (%v)", c.Email, a, err)
		case len(c.Email) > MaxEmail || at > 64:
			t.Fatalf("email %q accepted: too long", c.Email)
		case !strings.Contains(c.Email[at:], ".") || strings.ContainsAny(c.Email[at:], "[]:"):
			t.Fatalf("email %q accepted: its domain is not a name", c.Email)
		}
	})
}

// A product NewProduct accepts has a name by the rules and a price that is
// not negative.
func FuzzNewProduct(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string, price int64) {
		p, err := NewProduct(name, price)
		if err != nil {
			return
		}
		checkName(t, p.Name)
		if p.Price < 0 || p.Price != price {
			t.Fatalf("price %d accepted as %d", price, p.Price)
		}
	})
}

// An order NewOrder accepts (product ids separated by commas) has a
// customer and 1 to MaxPieces products, each by its canonical UUID.
func FuzzNewOrder(f *testing.F) {
	f.Fuzz(func(t *testing.T, customerID, productIDs string) {
		o, err := NewOrder(customerID, strings.Split(productIDs, ","))
		if err != nil {
			return
		}
		if len(o.ProductIDs) == 0 || len(o.ProductIDs) > MaxPieces {
			t.Fatalf("%d pieces accepted", len(o.ProductIDs))
		}
		for _, id := range append([]string{o.CustomerID}, o.ProductIDs...) {
			if u, err := uuid.Parse(id); err != nil || u.String() != id {
				t.Fatalf("id %q accepted", id)
			}
		}
	})
}

func checkName(t *testing.T, name string) {
	t.Helper()
	switch {
	case name == "" || name != strings.TrimSpace(name):
		t.Fatalf("name %q accepted: blank or not trimmed", name)
	case utf8.RuneCountInString(name) > MaxName:
		t.Fatalf("name of %d characters accepted", utf8.RuneCountInString(name))
	case strings.ContainsFunc(name, unicode.IsControl) || strings.ContainsAny(name, "\u2028\u2029"):
		t.Fatalf("name %q accepted: it has a control character or a line break", name)
	}
}
