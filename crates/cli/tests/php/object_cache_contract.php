<?php
// The object-cache drop-in against a real Redis, outside WordPress (the few WordPress functions
// it calls are defined here). Usage: php object_cache_contract.php MODE DROP_IN REDIS PASSWORD STATE
//   contract: WordPress's object-cache semantics, kept in Redis across "requests"
//   down:     REDIS points nowhere: the API still works within the request, and a write
//             leaves the "stale" marker
//   back:     Redis reachable again with an entry written before "down": it is gone
// CLIENT (optional): "php" for the drop-in's own RESP client (PHP without the redis
// extension), else phpredis.
// Prints "ok" after every check passed; exits 1 with the failed check otherwise.

[$_, $mode, $drop_in, $redis, $password, $state] = $argv;
$client = $argv[6] ?? 'native';
if ($client === 'php') {
    define('HAPRESS_REDIS_CLIENT', 'php');
}
define('ABSPATH', __DIR__ . '/');
define('HAPRESS_REDIS', $redis);
define('HAPRESS_REDIS_PASSWORD', $password);
define('HAPRESS_REDIS_STATE', $state);
define('WP_CACHE_KEY_SALT', 'hapress:test');
function is_multisite() { return false; }
function get_current_blog_id() { return 1; }
function wp_suspend_cache_addition() { return false; }
function _deprecated_function() {}
require $drop_in;

function check($what, $ok) {
    if (!$ok) {
        fwrite(STDERR, "FAILED: $what\n");
        exit(1);
    }
}

/** A new request: a new cache object (what wp_cache_init() does on every page). */
function next_request() {
    wp_cache_init();
}

/** A separate connection to the same Redis (phpredis), to look behind the drop-in's back. */
function raw() {
    $r = new Redis();
    if (strpos(HAPRESS_REDIS, 'tcp://') === 0) {
        [$host, $port] = explode(':', substr(HAPRESS_REDIS, 6));
        $r->connect($host, (int) $port);
    } else {
        $r->connect(HAPRESS_REDIS);
    }
    $r->auth(HAPRESS_REDIS_PASSWORD);
    return $r;
}

if ($mode === 'contract') {
    raw()->set('other-site:key', 'theirs');
    wp_cache_init();
    check('connected', $GLOBALS['wp_object_cache']->connected());
    $class = $GLOBALS['wp_object_cache']->client();
    check("the $client client is used ($class)", $class === ($client === 'php' ? 'Hapress_Redis' : 'Redis'));
    check('a missing key is false and not found', wp_cache_get('nope', 'g', false, $found) === false && $found === false);
    $o = new stdClass();
    $o->v = 1;
    check('set', wp_cache_set('obj', $o, 'posts'));
    $o->v = 2;
    check('the cache keeps a copy, not the caller\'s object', wp_cache_get('obj', 'posts')->v === 1);
    $got = wp_cache_get('obj', 'posts');
    $got->v = 3;
    check('get returns a copy', wp_cache_get('obj', 'posts')->v === 1);
    wp_cache_set('f', false, 'g');
    wp_cache_set('arr', ['a' => [1, 2]], 'g', 100);
    wp_cache_set('n', 5, 'counts-test');
    wp_cache_add_non_persistent_groups(['local-only']);
    wp_cache_set('x', 'here', 'local-only');
    check('add refuses an existing key', wp_cache_add('obj', 'other', 'posts') === false);
    check('replace refuses a missing key', wp_cache_replace('missing', 1, 'g') === false);

    next_request();
    wp_cache_add_non_persistent_groups(['local-only']);
    check('an object survives the request', wp_cache_get('obj', 'posts')->v === 1);
    check('a stored false is found', wp_cache_get('f', 'g', false, $found) === false && $found === true);
    check('an array survives', wp_cache_get('arr', 'g') === ['a' => [1, 2]]);
    $ttl = raw()->ttl('hapress:test:g:arr');
    check("an expiry is Redis's TTL ($ttl)", $ttl > 0 && $ttl <= 100);
    check('no expiry means none', raw()->ttl('hapress:test:posts:obj') === -1);
    check('a non-persistent group stays in its request', wp_cache_get('x', 'local-only') === false);
    check('add refuses a key only Redis has', wp_cache_add('f', 'other', 'g') === false);
    check('replace of a key only Redis has', wp_cache_replace('f', 'now', 'g') === true);
    check('incr', wp_cache_incr('n', 3, 'counts-test') === 8);
    check('decr stops at 0', wp_cache_decr('n', 100, 'counts-test') === 0);
    check('incr of a missing key', wp_cache_incr('missing', 1, 'g') === false);
    $m = wp_cache_get_multiple(['obj', 'nope', 'f'], 'posts');
    check('get_multiple', array_keys($m) === ['obj', 'nope', 'f'] && $m['obj']->v === 1 && $m['nope'] === false);

    next_request();
    check('a replaced value survives', wp_cache_get('f', 'g') === 'now');
    check('the counter survived', wp_cache_get('n', 'counts-test') === 0);
    check('delete', wp_cache_delete('f', 'g') === true);
    next_request();
    check('a deleted key is gone for the next request', wp_cache_get('f', 'g', false, $found) === false && $found === false);
    check('flush_group is supported', wp_cache_supports('flush_group'));
    wp_cache_flush_group('g');
    next_request();
    check('flush_group empties the group', wp_cache_get('arr', 'g') === false);
    check('flush_group leaves other groups', wp_cache_get('obj', 'posts') !== false);
    foreach (raw()->keys('*') as $k) {
        check("every key has the site's prefix or is the other site's ($k)", strpos($k, 'hapress:test:') === 0 || $k === 'other-site:key');
    }
    wp_cache_flush();
    next_request();
    check('flush empties this site', wp_cache_get('obj', 'posts') === false);
    check("flush leaves another site's keys", raw()->get('other-site:key') === 'theirs');
    // For "back": an entry that a change made while Redis is away must make stale.
    wp_cache_set('title', 'old', 'options');
} elseif ($mode === 'down') {
    wp_cache_init();
    check('not connected', !$GLOBALS['wp_object_cache']->connected());
    check('a pause is shared', @filemtime("$state/paused") > time());
    wp_cache_set('title', 'new', 'options');
    check('the request keeps its own writes', wp_cache_get('title', 'options') === 'new');
    check('a write made without Redis is marked', file_exists("$state/stale"));
} elseif ($mode === 'back') {
    @unlink("$state/paused");
    wp_cache_init();
    check('connected again', $GLOBALS['wp_object_cache']->connected());
    check('the marker is consumed', !file_exists("$state/stale"));
    check('the entry made stale while Redis was away is gone', wp_cache_get('title', 'options') === false);
}
echo "ok\n";
