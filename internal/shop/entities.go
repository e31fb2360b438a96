package shop

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/ordershop/ordershop/internal/platform"
)

// The entities of the shop, as clients read them and as the cache keeps
// them. Fields are declared in the order of their JSON names, so that an
// entity reads as it always did: {"email":…,"id":…,"name":…}.

// Customer is someone who orders.
type Customer struct {
	Email string `json:"email"`
	ID    string `json:"id"`
	Name  string `json:"name"`
}

// NewCustomer is a customer with a name and a plain e-mail address.
func NewCustomer(name, email string) (Customer, error) {
	name, email = strings.TrimSpace(name), strings.TrimSpace(email)
	if err := CheckName(name); err != nil {
		return Customer{}, err
	}
	if email == "" {
		return Customer{}, invalid("email is required")
	}
	return Customer{Name: name, Email: email}, CheckEmail("email", email)
}

// MaxName is the most characters a name has.
const MaxName = 200

// CheckName checks a name (trimmed) of a customer or a product: it is given,
// at most MaxName characters, and on one line: names go into mails, logs and
// pages, where a control character or a line break would forge or break
// them.
func CheckName(name string) error {
	switch {
	case name == "":
		return invalid("name is required")
	case utf8.RuneCountInString(name) > MaxName:
		return invalid("name must be at most %d characters", MaxName)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }):
		return invalid("name must not contain control characters or line breaks")
	}
	return nil
}

// Product is something to order.
type Product struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Price int64  `json:"price"` // in cents
}

// NewProduct is a product with a name and a price that is not negative.
func NewProduct(name string, price int64) (Product, error) {
	name = strings.TrimSpace(name)
	if err := CheckName(name); err != nil {
		return Product{}, err
	}
	if price < 0 {
		return Product{}, invalid("price must not be negative")
	}
	return Product{Name: name, Price: price}, nil
}

// Inventory is the stock of one product: there is one per product, so its
// id derives from the product's.
type Inventory struct {
	Amount    int64  `json:"amount"`
	ID        string `json:"id"`
	ProductID string `json:"product_id"`
}

// MaxAmount is the most pieces an inventory holds, 2^53-1: JavaScript
// clients read every amount up to it exactly.
const MaxAmount = 1<<53 - 1

// NewInventory is the inventory of a product.
func NewInventory(productID string, amount int64) (Inventory, error) {
	productID, err := platform.CheckUUID("product_id", productID)
	if err != nil {
		return Inventory{}, err
	}
	switch {
	case amount < 0:
		return Inventory{}, invalid("amount must not be negative")
	case amount > MaxAmount:
		return Inventory{}, invalid("amount must be at most %d", int64(MaxAmount))
	}
	return Inventory{ID: InventoryID(productID), ProductID: productID, Amount: amount}, nil
}

// Reservation is the stock held for one order (its id is the order's): its
// product ids, a repeated id holding one more piece. It lives in the
// inventory's stream, so that a reservation and the stock it takes change in
// one atomic commit. Reservations are internal: clients never see them.
type Reservation struct {
	ChangedAt    int64    `json:"changed_at"` // Unix milliseconds of the last change, for the sweeper's grace
	ID           string   `json:"id"`
	OrderVersion int64    `json:"order_version"` // of the latest order event followed; older ones change nothing
	ProductIDs   []string `json:"product_ids"`
	// RecordBy is the Unix millisecond by which the order service records
	// the order or gives up: its append carries it as its deadline
	// (eventstore.AppendBy). The sweeper waits for it too, so that it never
	// releases the stock of an order that may still be recorded.
	RecordBy int64 `json:"record_by,omitempty"`
}

// Order is what a customer ordered: a product id given twice is two pieces.
type Order struct {
	CustomerID string   `json:"customer_id"`
	ID         string   `json:"id"`
	ProductIDs []string `json:"product_ids"`
}

// NewOrder is an order of a customer for products.
func NewOrder(customerID string, productIDs []string) (Order, error) {
	customerID, err := platform.CheckUUID("customer_id", customerID)
	if err != nil {
		return Order{}, err
	}
	productIDs, err = CheckProductIDs(productIDs)
	return Order{CustomerID: customerID, ProductIDs: productIDs}, err
}

// MaxPieces is the most pieces one order holds: its reservation is one
// atomic commit, and one event carries them all.
const MaxPieces = 10_000

// CheckProductIDs checks the product ids of an order or a reservation: at
// least one, at most MaxPieces, each a UUID. It returns them in canonical
// form.
func CheckProductIDs(ids []string) ([]string, error) {
	switch {
	case len(ids) == 0:
		return nil, invalid("product_ids must not be empty")
	case len(ids) > MaxPieces:
		return nil, &Error{Kind: platform.ErrTooLarge, Msg: fmt.Sprintf("product_ids has %d pieces, more than %d", len(ids), MaxPieces)}
	}
	out := make([]string, len(ids))
	for i, p := range ids {
		var err error
		if out[i], err = platform.CheckUUID("product_ids", p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Billing is the bill of one order: there is one per order, so its id
// derives from the order's.
type Billing struct {
	Done    bool   `json:"done"`
	ID      string `json:"id"`
	OrderID string `json:"order_id"`
}

// NewBilling is the billing of an order.
func NewBilling(orderID string, done bool) (Billing, error) {
	if orderID == "" {
		return Billing{}, invalid("order_id is required")
	}
	orderID, err := platform.CheckUUID("order_id", orderID)
	return Billing{ID: BillingID(orderID), OrderID: orderID, Done: done}, err
}

// Email is a mail msg sent. Key makes sending it idempotent: its id derives
// from the key.
type Email struct {
	ID  string `json:"id"`
	Key string `json:"key"`
	Msg string `json:"msg"`
	To  string `json:"to"`
}

// NewEmail is a mail to send.
func NewEmail(to, msg, key string) (Email, error) {
	switch {
	case strings.TrimSpace(to) == "":
		return Email{}, invalid("to is required")
	case strings.TrimSpace(msg) == "":
		return Email{}, invalid("msg is required")
	case strings.TrimSpace(key) == "":
		return Email{}, invalid("key is required")
	}
	return Email{ID: EmailID(key), To: to, Msg: msg, Key: key}, CheckEmail("to", to)
}

// MaxEmail is the most bytes an e-mail address has (RFC 5321's path
// limit, without the brackets).
const MaxEmail = 254

// CheckEmail checks that a field is a plain e-mail address, one that mail
// servers deliver to: no display name, no comments or quotes, a domain name
// with a dot (not a local host, not an IP address), within the RFCs' lengths.
func CheckEmail(field, s string) error {
	if len(s) > MaxEmail {
		return invalid("%s must be at most %d bytes", field, MaxEmail)
	}
	if !plainEmail(s) {
		return invalid("%s %q is not an e-mail address", field, s)
	}
	return nil
}

func plainEmail(s string) bool {
	if a, err := mail.ParseAddress(s); err != nil || a.Address != s {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	labels := strings.Split(s[at+1:], ".")
	if at > 64 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.ContainsFunc(l, func(r rune) bool { return r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			return false
		}
	}
	// A top-level domain has a letter: 127.0.0.1 is an address, not a name.
	return strings.ContainsFunc(labels[len(labels)-1], unicode.IsLetter)
}

// The ids that derive from a key, so that the same key always gives the same
// id and "one per key" holds under concurrency: the store refuses the second.

// InventoryID is the id of a product's inventory.
func InventoryID(productID string) string { return derivedID("inventory", productID) }

// BillingID is the id of an order's billing.
func BillingID(orderID string) string { return derivedID("billing", orderID) }

// EmailID is the id of the mail sent for an idempotency key.
func EmailID(key string) string { return derivedID("email", key) }

func derivedID(kind, key string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("ordershop:"+kind+":"+key)).String()
}
