package platform

// RedisOptions lets the tests build a service's client from a Config, as
// Run does.
var RedisOptions = redisOptions
