<?php
/**
 * Plugin Name: hapress page cache
 * Description: Empties hapress's full-page cache (nginx) whenever what visitors see changes, so
 *   no visitor gets an old page once the change is done. Installed by `hapress up`; edits are
 *   overwritten.
 *
 * How it stays exact: a purge first writes a new generation, then deletes every stored page.
 * A page whose rendering began before a purge may hold what was there before the change: it
 * is sent with `X-Hapress-No-Cache` (nginx does not store it). A page rendered just before
 * the generation changed may still be on its way into the cache while the files are deleted:
 * the changing request deletes them once more before it ends.
 */

if (!defined('HAPRESS_PAGE_CACHE') || !is_dir(HAPRESS_PAGE_CACHE)) {
    return;
}

function hapress_cache_generation() {
    $g = @file_get_contents(HAPRESS_PAGE_CACHE . '/.generation');
    return $g === false ? '' : $g;
}

// Anonymous pages are rendered into a buffer: its callback runs before any header is sent.
$GLOBALS['hapress_cache_generation'] = hapress_cache_generation();
ob_start(function ($out, $phase) {
    if (($phase & PHP_OUTPUT_HANDLER_FINAL)
        && !headers_sent()
        && hapress_cache_generation() !== $GLOBALS['hapress_cache_generation']) {
        header('X-Hapress-No-Cache: 1');
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

function hapress_cache_purge() {
    $dir = HAPRESS_PAGE_CACHE;
    $tmp = "$dir/.generation." . getmypid();
    if (@file_put_contents($tmp, uniqid('', true) . ' ' . mt_rand()) !== false) {
        @rename($tmp, "$dir/.generation");
    }
    hapress_cache_empty($dir);
    if (empty($GLOBALS['hapress_cache_purged'])) {
        $GLOBALS['hapress_cache_purged'] = true;
        register_shutdown_function(function () {
            // Pages rendered before the new generation are in nginx's hands for a moment.
            usleep(200000);
            hapress_cache_empty(HAPRESS_PAGE_CACHE);
        });
    }
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
