// Package platform is the plumbing every OrderShop service shares: config
// from the environment, the Redis client, the HTTP server with health checks
// and graceful shutdown, JSON in and out, the one mapping of errors to HTTP
// statuses, calls to other services, the entity kinds, and the query and
// command routes the entity services have in common.
package platform
