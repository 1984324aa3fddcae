package coord

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store shared by every careloop process through one Redis.
type Redis struct {
	rdb    *redis.Client
	prefix string
}

func init() {
	// go-redis logs dial failures on its own; careloop reports Redis health
	// through /readyz and its own logs instead.
	redis.SetLogger(quietLogger{})
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...interface{}) {}

// NewRedis connects to addr (host:port or a redis:// URL). Every key is put
// under prefix, so tests and tenants can share one server.
func NewRedis(addr, prefix string) (*Redis, error) {
	var opt *redis.Options
	if u, err := redis.ParseURL(addr); err == nil {
		opt = u
	} else {
		opt = &redis.Options{Addr: addr}
	}
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	opt.MaxRetries = 1
	return &Redis{rdb: redis.NewClient(opt), prefix: prefix}, nil
}

// Client exposes the go-redis client for code that needs more than Store
// (the dispatcher's streams).
func (r *Redis) Client() *redis.Client { return r.rdb }

// Prefix is the prefix of every key of this store.
func (r *Redis) Prefix() string { return r.prefix }

// Key returns key under this store's prefix.
func (r *Redis) Key(key string) string { return r.prefix + key }

// Kind implements Store.
func (r *Redis) Kind() string { return "redis" }

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

// Close implements Store.
func (r *Redis) Close() error { return r.rdb.Close() }

// Get implements Cache.
func (r *Redis) Get(ctx context.Context, key string) (string, bool, error) {
	v, err := r.rdb.Get(ctx, r.Key(key)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

// Set implements Cache.
func (r *Redis) Set(ctx context.Context, key, val string, ttl time.Duration) error {
	if ttl < 0 {
		ttl = 0
	}
	return r.rdb.Set(ctx, r.Key(key), val, ttl).Err()
}

// Del implements Cache.
func (r *Redis) Del(ctx context.Context, key string) error {
	return r.rdb.Del(ctx, r.Key(key)).Err()
}

var compareAndDelete = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`)

// CompareAndDelete implements Cache.
func (r *Redis) CompareAndDelete(ctx context.Context, key, val string) (bool, error) {
	n, err := compareAndDelete.Run(ctx, r.rdb, []string{r.Key(key)}, val).Int()
	return n == 1, err
}

// TryLock implements Locker.
func (r *Redis) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	k := "lock:" + key
	token := randomToken()
	ok, err := r.rdb.SetNX(ctx, r.Key(k), token, ttl).Result()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrLockHeld
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = r.CompareAndDelete(ctx, k, token)
	}, nil
}

var fixedWindow = redis.NewScript(`
local n = redis.call("INCR", KEYS[1])
if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then redis.call("PEXPIRE", KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}`)

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	n, resetIn, err := r.hit(ctx, key, window)
	if err != nil {
		return false, 0, err
	}
	if n > limit {
		return false, resetIn, nil
	}
	return true, 0, nil
}

// Hit implements Limiter.
func (r *Redis) Hit(ctx context.Context, key string, window time.Duration) (int, error) {
	n, _, err := r.hit(ctx, key, window)
	return n, err
}

// hit counts one event in key's window and returns the count and how long
// until the window resets.
func (r *Redis) hit(ctx context.Context, key string, window time.Duration) (int, time.Duration, error) {
	res, err := fixedWindow.Run(ctx, r.rdb, []string{r.Key("rl:" + key)}, window.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, err
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

var fixedWindowN = redis.NewScript(`
local used = tonumber(redis.call("GET", KEYS[1]) or "0")
local want = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local grant = math.max(0, math.min(want, limit - used))
if grant > 0 then
  redis.call("INCRBY", KEYS[1], grant)
end
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then redis.call("PEXPIRE", KEYS[1], ARGV[3]); ttl = tonumber(ARGV[3]) end
return {grant, ttl}`)

// AllowN implements Limiter.
func (r *Redis) AllowN(ctx context.Context, key string, n, limit int, window time.Duration) (int, time.Duration, error) {
	res, err := fixedWindowN.Run(ctx, r.rdb, []string{r.Key("rl:" + key)}, n, limit, window.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, err
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

// Reset implements Limiter.
func (r *Redis) Reset(ctx context.Context, key string) error {
	return r.rdb.Del(ctx, r.Key("rl:"+key)).Err()
}

// Notify implements Signal.
func (r *Redis) Notify(ctx context.Context, topic string) error {
	return r.rdb.Publish(ctx, r.Key("sig:"+topic), "1").Err()
}

// Subscribe implements Signal. The subscription reconnects by itself when
// Redis comes back.
func (r *Redis) Subscribe(ctx context.Context, topic string) (<-chan struct{}, func()) {
	ps := r.rdb.Subscribe(ctx, r.Key("sig:"+topic))
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		ch := ps.Channel()
		for {
			select {
			case <-done:
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, func() { close(done); _ = ps.Close() }
}

// Publish implements Bus.
func (r *Redis) Publish(ctx context.Context, topic string, payload []byte) error {
	return r.rdb.Publish(ctx, r.Key("bus:"+topic), payload).Err()
}

// Listen implements Bus. The subscription reconnects by itself when Redis
// comes back; what was published meanwhile is lost.
func (r *Redis) Listen(ctx context.Context, topic string) (<-chan []byte, func()) {
	ps := r.rdb.Subscribe(ctx, r.Key("bus:"+topic))
	out := make(chan []byte, listenBuffer)
	done := make(chan struct{})
	go func() {
		ch := ps.Channel(redis.WithChannelSize(listenBuffer))
		for {
			select {
			case <-done:
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- []byte(m.Payload):
				default: // the listener is behind: drop rather than block
				}
			}
		}
	}()
	return out, func() { close(done); _ = ps.Close() }
}
