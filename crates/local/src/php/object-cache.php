<?php
/**
 * hapress persistent object cache: WordPress's object cache kept in Redis, shared by every web
 * replica. Installed by hapress as `wp-content/object-cache.php`; edits are overwritten.
 *
 * Settings (wp-config.php, written by hapress): HAPRESS_REDIS (a unix socket path, or
 * `tcp://host:port`), HAPRESS_REDIS_PASSWORD, HAPRESS_REDIS_STATE (a directory the web replicas
 * share and may write) and WP_CACHE_KEY_SALT (every key starts with it: two sites never mix).
 *
 * Redis is never needed for the site to work. When it cannot be reached or answers too slowly,
 * this request goes on with a per-request cache (like WordPress without a drop-in), the failure
 * is logged once, and a shared marker makes every replica skip Redis for the next few seconds
 * (so a hung Redis costs one slow request, not one per page). Because a change made while Redis
 * was unreachable could not remove the entries it made stale, a second marker says so, and the
 * first request that reaches Redis again empties it before using it: nothing stale is served.
 */

defined('ABSPATH') || exit;

class Hapress_Object_Cache {
    /** Seconds every replica leaves Redis alone after a failure. */
    const PAUSE = 5;

    /** @var Redis|null the connection, or null when Redis is not used by this request */
    private $redis = null;
    /** @var array this request's copy: "group\0key" => value */
    private $local = [];
    private $global_groups = [];
    private $local_groups = [];
    private $blog_prefix = '';
    private $prefix = '';
    /** @var bool a write could not reach Redis: entries it should have removed may be stale */
    private $missed = false;
    public $cache_hits = 0;
    public $cache_misses = 0;

    public function __construct() {
        $this->prefix = (defined('WP_CACHE_KEY_SALT') ? WP_CACHE_KEY_SALT : 'wp') . ':';
        $this->blog_prefix = is_multisite() ? get_current_blog_id() . ':' : '';
        if (!defined('HAPRESS_REDIS')) {
            return;
        }
        if (@filemtime($this->marker('paused')) > time()) {
            $this->missed = true; // writes of this request cannot reach Redis either
            return;
        }
        $auth = defined('HAPRESS_REDIS_PASSWORD') ? ['auth' => HAPRESS_REDIS_PASSWORD] : [];
        $target = HAPRESS_REDIS;
        $port = 0;
        if (strpos($target, 'tcp://') === 0) {
            $hp = substr($target, 6);
            $i = strrpos($hp, ':');
            $target = trim(substr($hp, 0, $i), '[]');
            $port = (int) substr($hp, $i + 1);
        }
        // Persistent: php-fpm workers keep their connection between requests. One that Redis
        // closed (restarted) fails the ping: a fresh one is tried once before giving up.
        // PHP's redis extension when it is there (Debian's php-redis); else (the official
        // WordPress image has none) the small client below.
        $native = class_exists('Redis')
            && !(defined('HAPRESS_REDIS_CLIENT') && HAPRESS_REDIS_CLIENT === 'php');
        for ($try = 1; ; $try++) {
            $r = null;
            try {
                if ($native) {
                    $r = new Redis();
                    if (!$r->pconnect($target, $port, 0.25, 'hapress', 0, 0.5, $auth)) {
                        throw new RedisException('cannot connect');
                    }
                    // A persistent connection may be one Redis has closed since.
                    $r->ping();
                } else {
                    // A new connection, proven by its AUTH (or by a ping without a password).
                    $r = new Hapress_Redis($target, $port, 0.25, 0.5, $auth ? $auth['auth'] : null);
                    if (!$auth) {
                        $r->ping();
                    }
                }
                $this->redis = $r;
                break;
            } catch (Throwable $e) {
                try {
                    $r && $r->close();
                } catch (Throwable $ignored) {
                }
                if ($try >= 2) {
                    $this->failed($e);
                    return;
                }
            }
        }
        // A change could not reach Redis while it was away: empty it before using it. The
        // marker goes only after the flush (a request that sees no marker finds Redis
        // emptied), and only if no new failure rewrote it meanwhile.
        $token = @file_get_contents($this->marker('stale'));
        if ($token !== false) {
            try {
                $this->flush_redis();
                if (@file_get_contents($this->marker('stale')) === $token) {
                    @unlink($this->marker('stale'));
                }
                error_log('hapress object cache: emptied Redis (changes were made while it could not be reached)');
            } catch (Throwable $e) {
                $this->failed($e);
            }
        }
    }

    /** Says that Redis may hold entries a change could not remove (a new token each time). */
    private function mark_stale() {
        $this->replace_marker('stale', function ($tmp) {
            return @file_put_contents($tmp, uniqid('', true) . mt_rand()) !== false;
        });
    }

    /** Markers are new files renamed over the old: any user of the directory may replace them. */
    private function replace_marker($name, callable $write) {
        $tmp = $this->marker($name . '.' . getmypid() . '.' . mt_rand());
        if ($write($tmp)) {
            @rename($tmp, $this->marker($name));
        }
    }

    private function marker($name) {
        return defined('HAPRESS_REDIS_STATE') ? HAPRESS_REDIS_STATE . "/$name" : '/nonexistent/' . $name;
    }

    /** Redis failed: this request goes on without it, and every replica pauses it. */
    private function failed($e) {
        if ($this->redis !== null) {
            try {
                $this->redis->close();
            } catch (Throwable $ignored) {
            }
        }
        $this->redis = null;
        $this->missed = true;
        $this->replace_marker('paused', function ($tmp) {
            return @touch($tmp, time() + self::PAUSE);
        });
        error_log('hapress object cache: Redis unavailable (' . $e->getMessage() . '); using a per-request cache for ' . self::PAUSE . ' s');
    }

    /** Every write to Redis (connected) runs through here: a failure marks Redis stale. */
    private function write(callable $f) {
        try {
            return $f($this->redis);
        } catch (Throwable $e) {
            $this->failed($e);
            $this->mark_stale();
            return null;
        }
    }

    /** A write this request keeps to itself because Redis is away: Redis may hold it stale. */
    private function missed_write($group) {
        if ($this->missed && !isset($this->local_groups[$group])) {
            $this->mark_stale();
        }
    }

    /** A read from Redis (connected): a failure leaves Redis for the rest of the request. */
    private function read(callable $f) {
        try {
            return $f($this->redis);
        } catch (Throwable $e) {
            $this->failed($e);
            return null;
        }
    }

    private function group($group) {
        return ($group === '' || $group === null) ? 'default' : (string) $group;
    }

    private function id($key, $group) {
        return $group . "\0" . $key;
    }

    private function redis_key($key, $group) {
        $blog = isset($this->global_groups[$group]) ? '' : $this->blog_prefix;
        return $this->prefix . $blog . $group . ':' . $key;
    }

    private function persistent($group) {
        return $this->redis !== null && !isset($this->local_groups[$group]);
    }

    private static function copy($v) {
        return is_object($v) ? clone $v : $v;
    }

    private static function valid_key($key) {
        return is_int($key) || (is_string($key) && trim($key) !== '');
    }

    public function get($key, $group = '', $force = false, &$found = null) {
        $group = $this->group($group);
        if (!self::valid_key($key)) {
            $found = false;
            return false;
        }
        $id = $this->id($key, $group);
        if (!$force && array_key_exists($id, $this->local)) {
            $found = true;
            $this->cache_hits++;
            return self::copy($this->local[$id]);
        }
        if ($this->persistent($group)) {
            $raw = $this->read(function ($r) use ($key, $group) {
                return $r->get($this->redis_key($key, $group));
            });
            if (is_string($raw)) {
                $value = unserialize($raw);
                $this->local[$id] = $value;
                $found = true;
                $this->cache_hits++;
                return self::copy($value);
            }
        }
        $found = false;
        $this->cache_misses++;
        return false;
    }

    public function get_multiple($keys, $group = '', $force = false) {
        $group = $this->group($group);
        $values = [];
        $fetch = [];
        foreach ($keys as $key) {
            $id = $this->id($key, $group);
            if (!$force && array_key_exists($id, $this->local)) {
                $values[$key] = self::copy($this->local[$id]);
                $this->cache_hits++;
            } else {
                $values[$key] = false;
                if (self::valid_key($key)) {
                    $fetch[] = $key;
                }
            }
        }
        if ($fetch && $this->persistent($group)) {
            $raw = $this->read(function ($r) use ($fetch, $group) {
                return $r->mGet(array_map(function ($k) use ($group) {
                    return $this->redis_key($k, $group);
                }, $fetch));
            });
            foreach ($fetch as $i => $key) {
                if (is_array($raw) && isset($raw[$i]) && is_string($raw[$i])) {
                    $value = unserialize($raw[$i]);
                    $this->local[$this->id($key, $group)] = $value;
                    $values[$key] = self::copy($value);
                    $this->cache_hits++;
                } else {
                    $this->cache_misses++;
                }
            }
        } else {
            $this->cache_misses += count($fetch);
        }
        return $values;
    }

    /** $mode: null (always), 'nx' (only if absent: add), 'xx' (only if present: replace). */
    private function store($key, $data, $group, $expire, $mode) {
        $group = $this->group($group);
        if (!self::valid_key($key)) {
            return false;
        }
        $id = $this->id($key, $group);
        if ($mode === 'nx' && array_key_exists($id, $this->local)) {
            return false;
        }
        if ($mode === 'xx' && !array_key_exists($id, $this->local) && !$this->persistent($group)) {
            return false;
        }
        $data = self::copy($data);
        if ($this->persistent($group)) {
            $opts = [];
            if ($mode !== null) {
                $opts[] = $mode;
            }
            if ((int) $expire > 0) {
                $opts['ex'] = (int) $expire;
            }
            $ok = $this->write(function ($r) use ($key, $group, $data, $opts) {
                return $r->set($this->redis_key($key, $group), serialize($data), $opts);
            });
            if ($ok === null) {
                // Redis failed during the write: an existing entry may be stale (marked).
                if ($mode === 'xx' && !array_key_exists($id, $this->local)) {
                    return false;
                }
            } elseif (!$ok) {
                return false;
            }
        } else {
            $this->missed_write($group);
        }
        $this->local[$id] = $data;
        return true;
    }

    public function add($key, $data, $group = '', $expire = 0) {
        if (wp_suspend_cache_addition()) {
            return false;
        }
        return $this->store($key, $data, $group, $expire, 'nx');
    }

    public function replace($key, $data, $group = '', $expire = 0) {
        return $this->store($key, $data, $group, $expire, 'xx');
    }

    public function set($key, $data, $group = '', $expire = 0) {
        return $this->store($key, $data, $group, $expire, null);
    }

    public function delete($key, $group = '') {
        $group = $this->group($group);
        if (!self::valid_key($key)) {
            return false;
        }
        $id = $this->id($key, $group);
        $had = array_key_exists($id, $this->local);
        unset($this->local[$id]);
        if (!$this->persistent($group)) {
            $this->missed_write($group);
            return $had;
        }
        $n = $this->write(function ($r) use ($key, $group) {
            return $r->del($this->redis_key($key, $group));
        });
        return $had || $n > 0;
    }

    public function incr($key, $offset = 1, $group = '') {
        $value = $this->get($key, $group, false, $found);
        if (!$found) {
            return false;
        }
        $value = max(0, (is_numeric($value) ? (int) $value : 0) + (int) $offset);
        $this->set($key, $value, $group);
        return $value;
    }

    public function flush_runtime() {
        $this->local = [];
        return true;
    }

    /** Deletes this site's keys (the prefix), in batches. */
    private function flush_redis($match = '') {
        $r = $this->redis;
        if ($r instanceof Redis) {
            $r->setOption(Redis::OPT_SCAN, Redis::SCAN_RETRY);
        }
        $it = null;
        while (($keys = $r->scan($it, $this->prefix . $match . '*', 1000)) !== false) {
            if ($keys) {
                $r->unlink($keys);
            }
        }
    }

    public function flush() {
        $this->local = [];
        if ($this->redis === null) {
            $this->mark_stale();
            return true;
        }
        $ok = $this->write(function ($r) {
            $this->flush_redis();
            return true;
        });
        return $ok === true;
    }

    public function flush_group($group) {
        $group = $this->group($group);
        foreach (array_keys($this->local) as $id) {
            if (strpos($id, $group . "\0") === 0) {
                unset($this->local[$id]);
            }
        }
        if ($this->redis === null) {
            $this->mark_stale();
            return true;
        }
        $blog = isset($this->global_groups[$group]) ? '' : $this->blog_prefix;
        $ok = $this->write(function ($r) use ($blog, $group) {
            $this->flush_redis($blog . $group . ':');
            return true;
        });
        return $ok === true;
    }

    public function add_global_groups($groups) {
        foreach ((array) $groups as $g) {
            $this->global_groups[$g] = true;
        }
    }

    public function add_non_persistent_groups($groups) {
        foreach ((array) $groups as $g) {
            $this->local_groups[$g] = true;
        }
    }

    public function switch_to_blog($blog_id) {
        $this->blog_prefix = is_multisite() ? (int) $blog_id . ':' : '';
    }

    public function connected() {
        return $this->redis !== null;
    }

    /** The client class in use ('' without Redis). */
    public function client() {
        return $this->redis === null ? '' : get_class($this->redis);
    }

    public function stats() {
        echo '<p><strong>Cache hits:</strong> ' . (int) $this->cache_hits . '<br />';
        echo '<strong>Cache misses:</strong> ' . (int) $this->cache_misses . '<br />';
        echo '<strong>Redis:</strong> ' . ($this->redis !== null ? 'connected' : 'not used') . '</p>';
    }
}

/**
 * The part of phpredis's API this drop-in uses, spoken in RESP over a plain socket: for PHP
 * builds without the redis extension (the official WordPress image). One connection per
 * request; any failure closes it and throws, so a half-read answer is never taken for the
 * next one.
 */
class Hapress_Redis {
    private $s;

    public function __construct($host, $port, $timeout, $read_timeout, $password) {
        $addr = $port ? 'tcp://' . (strpos($host, ':') !== false ? "[$host]" : $host) . ":$port" : "unix://$host";
        $s = @stream_socket_client($addr, $errno, $errstr, $timeout);
        if (!$s) {
            throw new RuntimeException("cannot connect to $addr: $errstr");
        }
        stream_set_timeout($s, (int) $read_timeout, (int) (fmod($read_timeout, 1) * 1e6));
        $this->s = $s;
        if ($password !== null) {
            $this->call(['AUTH', $password]);
        }
    }

    private function fail($why) {
        $this->close();
        throw new RuntimeException($why);
    }

    public function call(array $args) {
        if (!$this->s) {
            throw new RuntimeException('not connected');
        }
        $out = '*' . count($args) . "\r\n";
        foreach ($args as $a) {
            $a = (string) $a;
            $out .= '$' . strlen($a) . "\r\n" . $a . "\r\n";
        }
        for ($done = 0; $done < strlen($out); $done += $n) {
            $n = @fwrite($this->s, substr($out, $done));
            if (!$n) {
                $this->fail('write failed');
            }
        }
        return $this->reply();
    }

    private function read($n) {
        $data = '';
        while (strlen($data) < $n) {
            $chunk = @fread($this->s, $n - strlen($data));
            if ($chunk === false || $chunk === '') {
                $this->fail(stream_get_meta_data($this->s)['timed_out'] ? 'read timed out' : 'connection lost');
            }
            $data .= $chunk;
        }
        return $data;
    }

    private function reply() {
        $line = @fgets($this->s);
        if ($line === false || substr($line, -2) !== "\r\n") {
            $this->fail($this->s && stream_get_meta_data($this->s)['timed_out'] ? 'read timed out' : 'connection lost');
        }
        $rest = substr($line, 1, -2);
        switch ($line[0]) {
            case '+':
                return $rest;
            case '-':
                // An error answer leaves the connection in step, but this client has no use
                // for one: the caller treats it as Redis failing.
                throw new RuntimeException($rest);
            case ':':
                return (int) $rest;
            case '$':
                return (int) $rest < 0 ? false : substr($this->read((int) $rest + 2), 0, -2);
            case '*':
                if ((int) $rest < 0) {
                    return false;
                }
                $items = [];
                for ($i = 0; $i < (int) $rest; $i++) {
                    $items[] = $this->reply();
                }
                return $items;
        }
        $this->fail('not a RESP answer');
    }

    public function ping() {
        return $this->call(['PING']);
    }

    public function get($key) {
        return $this->call(['GET', $key]);
    }

    public function mGet(array $keys) {
        return $this->call(array_merge(['MGET'], $keys));
    }

    /** $opts as phpredis: 'nx' or 'xx', and 'ex' => seconds. False when NX/XX refused. */
    public function set($key, $value, array $opts = []) {
        $args = ['SET', $key, $value];
        foreach ($opts as $k => $v) {
            if ($k === 'ex') {
                array_push($args, 'EX', (int) $v);
            } else {
                $args[] = strtoupper($v);
            }
        }
        return $this->call($args) === 'OK';
    }

    public function del($key) {
        return $this->call(['DEL', $key]);
    }

    public function unlink(array $keys) {
        return $this->call(array_merge(['UNLINK'], $keys));
    }

    /** phpredis's SCAN with SCAN_RETRY: the next non-empty batch, false once done. */
    public function scan(&$it, $pattern, $count) {
        if ($it === 0) {
            return false;
        }
        do {
            [$cursor, $keys] = $this->call(['SCAN', (int) $it, 'MATCH', $pattern, 'COUNT', $count]);
            $it = (int) $cursor;
        } while (!$keys && $it !== 0);
        return $keys ?: false;
    }

    public function close() {
        if ($this->s) {
            @fclose($this->s);
        }
        $this->s = null;
        return true;
    }
}

function wp_cache_init() {
    $GLOBALS['wp_object_cache'] = new Hapress_Object_Cache();
}

function wp_cache_add($key, $data, $group = '', $expire = 0) {
    return $GLOBALS['wp_object_cache']->add($key, $data, $group, (int) $expire);
}

function wp_cache_add_multiple(array $data, $group = '', $expire = 0) {
    $out = [];
    foreach ($data as $key => $value) {
        $out[$key] = wp_cache_add($key, $value, $group, $expire);
    }
    return $out;
}

function wp_cache_replace($key, $data, $group = '', $expire = 0) {
    return $GLOBALS['wp_object_cache']->replace($key, $data, $group, (int) $expire);
}

function wp_cache_set($key, $data, $group = '', $expire = 0) {
    return $GLOBALS['wp_object_cache']->set($key, $data, $group, (int) $expire);
}

function wp_cache_set_multiple(array $data, $group = '', $expire = 0) {
    $out = [];
    foreach ($data as $key => $value) {
        $out[$key] = wp_cache_set($key, $value, $group, $expire);
    }
    return $out;
}

function wp_cache_get($key, $group = '', $force = false, &$found = null) {
    return $GLOBALS['wp_object_cache']->get($key, $group, $force, $found);
}

function wp_cache_get_multiple($keys, $group = '', $force = false) {
    return $GLOBALS['wp_object_cache']->get_multiple($keys, $group, $force);
}

function wp_cache_delete($key, $group = '') {
    return $GLOBALS['wp_object_cache']->delete($key, $group);
}

function wp_cache_delete_multiple(array $keys, $group = '') {
    $out = [];
    foreach ($keys as $key) {
        $out[$key] = wp_cache_delete($key, $group);
    }
    return $out;
}

function wp_cache_incr($key, $offset = 1, $group = '') {
    return $GLOBALS['wp_object_cache']->incr($key, $offset, $group);
}

function wp_cache_decr($key, $offset = 1, $group = '') {
    return $GLOBALS['wp_object_cache']->incr($key, -$offset, $group);
}

function wp_cache_flush() {
    return $GLOBALS['wp_object_cache']->flush();
}

function wp_cache_flush_runtime() {
    return $GLOBALS['wp_object_cache']->flush_runtime();
}

function wp_cache_flush_group($group) {
    return $GLOBALS['wp_object_cache']->flush_group($group);
}

function wp_cache_supports($feature) {
    return in_array($feature, ['add_multiple', 'set_multiple', 'get_multiple', 'delete_multiple', 'flush_runtime', 'flush_group'], true);
}

function wp_cache_close() {
    return true;
}

function wp_cache_add_global_groups($groups) {
    $GLOBALS['wp_object_cache']->add_global_groups($groups);
}

function wp_cache_add_non_persistent_groups($groups) {
    $GLOBALS['wp_object_cache']->add_non_persistent_groups($groups);
}

function wp_cache_switch_to_blog($blog_id) {
    $GLOBALS['wp_object_cache']->switch_to_blog($blog_id);
}

function wp_cache_reset() {
    _deprecated_function(__FUNCTION__, '3.5.0', 'wp_cache_switch_to_blog()');
    $GLOBALS['wp_object_cache']->flush_runtime();
}
