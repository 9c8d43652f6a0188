package service

import "github.com/redis/go-redis/v9"

type redisClient = redis.Client

// newRedisClient opens a client of its own: the service closes it on
// shutdown, and the redistest client must outlive that.
func newRedisClient(url string) (*redis.Client, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}
