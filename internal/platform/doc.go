// Package platform is the plumbing every OrderShop service shares: one way to
// run a binary (Run), config from the environment, the Redis client, the HTTP
// server with health checks and graceful shutdown, JSON in and out, the one
// mapping of errors to HTTP statuses, calls to other services, traces, the
// query and command routes of an entity, and consuming a stream through a
// router. The shop itself (its entities, events and mails) is internal/shop.
package platform
