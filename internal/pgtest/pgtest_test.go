package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/ordershop/ordershop/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestEachTestHasADatabaseOfItsOwn(t *testing.T) {
	ctx := context.Background()
	a, b := connect(t, pgtest.URL(t)), connect(t, pgtest.URL(t))
	if _, err := a.Exec(ctx, "CREATE TABLE events (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'events'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the other database has %d tables named events (%v), want 0", n, err)
	}
}

// A fault test stops the server as a crash would and starts it again: what
// was committed is still there.
func TestAServerStoppedAndStartedKeepsWhatWasCommitted(t *testing.T) {
	ctx := context.Background()
	s := pgtest.NewServer(t)
	url := s.Database(t)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, "CREATE TABLE events (id int PRIMARY KEY); INSERT INTO events VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("the stopped server still answers")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := connect(t, url).QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the restart: %d rows (%v), want 2", n, err)
	}
}
