<?php
/**
 * Plugin Name: hapress page cache
 * Description: Empties hapress's full-page cache (nginx) whenever what visitors see changes, so
 *   no visitor gets an old page once the change is done. Installed by hapress; edits are
 *   overwritten.
 *
 * Where the cache is (wp-config.php says):
 * - HAPRESS_PAGE_CACHE: a directory of this machine that nginx keeps its pages in (`hapress
 *   up`); this plugin deletes the files itself;
 * - HAPRESS_PAGE_CACHE_PEERS: `host:port,...` of cache pods (Kubernetes); each host is
 *   resolved to every address it has (a headless Service) and each address is asked to empty
 *   its copy, with a request signed by the key in HAPRESS_PAGE_CACHE_KEY_FILE;
 * - HAPRESS_PAGE_CACHE_GENERATION: a file every web replica reads (default: `.generation` in
 *   HAPRESS_PAGE_CACHE).
 *
 * How it stays exact: a change first writes a new generation. A page whose rendering began
 * before it may hold what was there before the change: it is sent with `X-Hapress-No-Cache`
 * (nginx does not store it). When the changing request ends, after its last write, the
 * generation changes once more and every copy is emptied, then once more 200 ms later (a page
 * rendered just before may still be on its way into the cache); only then does the request
 * return.
 */

if (!defined('HAPRESS_PAGE_CACHE') && !defined('HAPRESS_PAGE_CACHE_PEERS')) {
    return;
}
if (defined('HAPRESS_PAGE_CACHE') && !is_dir(HAPRESS_PAGE_CACHE)) {
    return;
}

function hapress_cache_generation_file() {
    if (defined('HAPRESS_PAGE_CACHE_GENERATION')) {
        return HAPRESS_PAGE_CACHE_GENERATION;
    }
    return defined('HAPRESS_PAGE_CACHE') ? HAPRESS_PAGE_CACHE . '/.generation' : '';
}

/** The current generation; false when there is none yet. */
function hapress_cache_generation() {
    $file = hapress_cache_generation_file();
    return $file === '' ? false : @file_get_contents($file);
}

// Written in place, not renamed: a replica reading it over NFS sees the new contents at its
// next open (close-to-open). A read of a half-written value only differs, which is safe.
function hapress_cache_new_generation() {
    $file = hapress_cache_generation_file();
    if ($file === '') {
        return;
    }
    if (!is_dir(dirname($file))) {
        @mkdir(dirname($file), 0775, true);
    }
    if (@file_put_contents($file, uniqid('', true) . ' ' . mt_rand()) === false) {
        error_log("hapress page cache: cannot write $file");
    }
}

// The generation this request started in: read by wp-config.php, before WordPress read
// anything from the database (else here, a little later).
if (!isset($GLOBALS['hapress_cache_start']) || $GLOBALS['hapress_cache_start'] === false) {
    $GLOBALS['hapress_cache_start'] = hapress_cache_generation();
}
if ($GLOBALS['hapress_cache_start'] === false) {
    hapress_cache_new_generation(); // the site's first
    $GLOBALS['hapress_cache_start'] = hapress_cache_generation();
}
// Anonymous pages are rendered into a buffer: its callback runs before any header is sent.
// A generation that changed, or that reads empty (being written), means a change happened
// while this page was rendered: it is not stored.
ob_start(function ($out, $phase) {
    if (($phase & PHP_OUTPUT_HANDLER_FINAL) && !headers_sent()) {
        $now = hapress_cache_generation();
        if ($now === false || $now === '' || $now !== $GLOBALS['hapress_cache_start']) {
            header('X-Hapress-No-Cache: 1');
        }
    }
    return $out;
});

function hapress_cache_empty($dir) {
    foreach (@scandir($dir) ?: [] as $name) {
        if ($name === '.' || $name === '..' || strpos($name, '.generation') === 0) {
            continue;
        }
        $path = "$dir/$name";
        if (is_dir($path) && !is_link($path)) {
            hapress_cache_empty($path);
            @rmdir($path);
        } else {
            @unlink($path);
        }
    }
}

/**
 * Every `ip:port` the peers' names resolve to (IPv4, else IPv6), and the names that resolve
 * to nothing (a DNS failure: their copies cannot be emptied).
 */
function hapress_cache_peer_addresses() {
    $out = [];
    $unresolved = [];
    foreach (array_filter(array_map('trim', explode(',', HAPRESS_PAGE_CACHE_PEERS))) as $peer) {
        $i = strrpos($peer, ':');
        $host = $i === false ? $peer : substr($peer, 0, $i);
        $port = $i === false ? '80' : substr($peer, $i + 1);
        $ips = filter_var($host, FILTER_VALIDATE_IP) ? [$host] : (@gethostbynamel($host) ?: []);
        if (!$ips && function_exists('dns_get_record')) {
            foreach (@dns_get_record($host, DNS_AAAA) ?: [] as $r) {
                $ips[] = '[' . $r['ipv6'] . ']';
            }
        }
        if (!$ips) {
            $unresolved[] = $host;
        }
        foreach ($ips as $ip) {
            $out[] = "$ip:$port";
        }
    }
    return [array_values(array_unique($out)), $unresolved];
}

/**
 * Asks every cache pod to empty its copy (each empties, waits 200 ms, empties again, then
 * answers), all at once; one more try for those that failed. Returns the failures.
 */
function hapress_cache_purge_peers() {
    $key = trim((string) @file_get_contents(HAPRESS_PAGE_CACHE_KEY_FILE));
    if ($key === '') {
        error_log('hapress page cache: no purge key in ' . HAPRESS_PAGE_CACHE_KEY_FILE);
        return ['no key'];
    }
    [$pending, $unresolved] = hapress_cache_peer_addresses();
    if ($unresolved) {
        [$again, $unresolved] = hapress_cache_peer_addresses();
        $pending = array_values(array_unique(array_merge($pending, $again)));
        foreach ($unresolved as $host) {
            error_log("hapress page cache: $host resolves to no address; its copies are not emptied");
        }
    }
    for ($try = 0; $try < 2 && $pending; $try++) {
        $t = (string) time();
        $auth = $t . '.' . hash_hmac('sha256', "purge $t", $key);
        $failed = [];
        foreach (hapress_cache_post_all($pending, $auth) as $addr => $code) {
            if ($code !== 200) {
                $failed[] = $addr;
                error_log("hapress page cache: purge of $addr answered " . ($code ?: 'nothing'));
            }
        }
        $pending = $failed;
    }
    return array_merge($pending, $unresolved);
}

/**
 * POST /purge to each address, all at once (plain sockets: no extension needed); the status
 * code of each (0: no answer within 3 s; connecting may take 1 s of them).
 */
function hapress_cache_post_all($addrs, $auth) {
    $codes = [];
    $socks = [];
    $replies = [];
    foreach ($addrs as $addr) {
        $codes[$addr] = 0;
        $s = @stream_socket_client("tcp://$addr", $errno, $err, 1,
            STREAM_CLIENT_CONNECT | STREAM_CLIENT_ASYNC_CONNECT);
        if ($s) {
            $socks[$addr] = $s;
            $replies[$addr] = '';
        }
    }
    $request = "POST /purge HTTP/1.0\r\nHost: hapress\r\nX-Hapress-Purge: $auth\r\nContent-Length: 0\r\n\r\n";
    $unsent = $socks;
    $deadline = microtime(true) + 3;
    while ($socks && microtime(true) < $deadline) {
        $read = array_values(array_diff_key($socks, $unsent));
        $write = array_values($unsent);
        $none = null;
        $left = max(0, $deadline - microtime(true));
        if (!@stream_select($read, $write, $none, (int) $left, (int) (fmod($left, 1) * 1e6))) {
            break;
        }
        foreach ($write as $s) {
            $addr = array_search($s, $socks, true);
            unset($unsent[$addr]);
            if (@fwrite($s, $request) !== strlen($request)) {
                fclose($s);
                unset($socks[$addr]);
            }
        }
        foreach ($read as $s) {
            $addr = array_search($s, $socks, true);
            $chunk = @fread($s, 8192);
            if ($chunk === '' || $chunk === false) {
                if (preg_match('#^HTTP/\S+ (\d{3})#', $replies[$addr], $m)) {
                    $codes[$addr] = (int) $m[1];
                }
                fclose($s);
                unset($socks[$addr]);
            } else {
                $replies[$addr] .= $chunk;
            }
        }
    }
    foreach ($socks as $s) {
        fclose($s);
    }
    return $codes;
}

// A change marks the pages being rendered and empties the cache once per request (a publish
// fires several of the hooks below); the request's end does the exact, final pass.
function hapress_cache_purge() {
    if (!empty($GLOBALS['hapress_cache_purged'])) {
        return;
    }
    $GLOBALS['hapress_cache_purged'] = true;
    hapress_cache_new_generation();
    if (defined('HAPRESS_PAGE_CACHE')) {
        hapress_cache_empty(HAPRESS_PAGE_CACHE);
    }
    register_shutdown_function(function () {
        // After the request's last write: pages rendered from here on show the change.
        hapress_cache_new_generation();
        if (defined('HAPRESS_PAGE_CACHE')) {
            hapress_cache_empty(HAPRESS_PAGE_CACHE);
            // Pages rendered before the new generation are in nginx's hands for a moment.
            usleep(200000);
            hapress_cache_empty(HAPRESS_PAGE_CACHE);
        }
        if (defined('HAPRESS_PAGE_CACHE_PEERS')) {
            hapress_cache_purge_peers();
        }
    });
}

// Posts and pages: published, updated while published, unpublished, trashed, deleted.
add_action('transition_post_status', function ($new, $old, $post) {
    if (($new === 'publish' || $old === 'publish') && !wp_is_post_revision($post)) {
        hapress_cache_purge();
    }
}, 10, 3);
add_action('post_updated', function ($id, $after, $before) {
    if ($after->post_status === 'publish' || $before->post_status === 'publish') {
        hapress_cache_purge();
    }
}, 10, 3);
add_action('deleted_post', 'hapress_cache_purge');
// Comments: a visible comment appears (posted, or added through REST or wp-cli), changes or goes.
add_action('wp_insert_comment', function ($id, $comment) {
    if ((string) $comment->comment_approved === '1') {
        hapress_cache_purge();
    }
}, 10, 2);
foreach (['wp_set_comment_status', 'edit_comment', 'deleted_comment', 'transition_comment_status'] as $hook) {
    add_action($hook, 'hapress_cache_purge');
}
// Everything else a page shows: menus, widgets, the theme and its settings, terms, plugins,
// and the options that shape every page.
foreach ([
    'wp_update_nav_menu', 'wp_delete_nav_menu', 'switch_theme', 'customize_save_after',
    'created_term', 'edited_term', 'delete_term', 'activated_plugin', 'deactivated_plugin',
    'upgrader_process_complete', 'permalink_structure_changed',
] as $hook) {
    add_action($hook, 'hapress_cache_purge');
}
add_action('updated_option', function ($option) {
    static $shown = [
        'blogname', 'blogdescription', 'sidebars_widgets', 'show_on_front', 'page_on_front',
        'page_for_posts', 'posts_per_page', 'posts_per_rss', 'date_format', 'time_format',
        'timezone_string', 'gmt_offset', 'WPLANG', 'stylesheet', 'template', 'site_icon',
        'blog_public', 'default_comment_status', 'comment_registration', 'thread_comments',
        'comments_per_page', 'default_comments_page', 'comment_order', 'sticky_posts',
        'category_base', 'tag_base', 'rss_use_excerpt', 'wp_page_for_privacy_policy',
    ];
    if (in_array($option, $shown, true) || strpos($option, 'widget_') === 0
        || strpos($option, 'theme_mods_') === 0) {
        hapress_cache_purge();
    }
});
