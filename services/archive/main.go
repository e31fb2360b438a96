// Command archive keeps every event of the shop in PostgreSQL and trims the
// streams in Redis to their hot window. It reads every partition of every
// stream, the mails' included, through the consumer group "archive" and
// copies the events to the archive of ARCHIVE_URL (pkg/archive); every
// TRIM_EVERY it trims each partition below what every reader is done with
// and below the last HOT_RETENTION (archive.Trim), so that Redis holds the
// recent events and whatever a consumer still needs, and PostgreSQL the
// whole history. Without ARCHIVE_URL it archives and trims nothing, and
// the streams keep all their history.
package main

import (
	"context"

	"github.com/ordershop/ordershop/internal/platform"
	"github.com/ordershop/ordershop/internal/shop"
)

func main() { platform.Run(context.Background(), "archive", shop.Domain, wire) }
