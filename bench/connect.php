<?php
// One worker of the connection-per-request benchmark (what WordPress does): connect, set
// utf8mb4, read one option, close, until the deadline; prints the number of requests.
// Usage: php bench/connect.php PORT SECONDS   (password in MYSQL_PWD)
[$_, $port, $secs] = $argv;
$end = microtime(true) + $secs; $n = 0;
while (microtime(true) < $end) {
    $m = new mysqli('127.0.0.1', 'wordpress', getenv('MYSQL_PWD'), 'wordpress', (int) $port);
    $m->set_charset('utf8mb4');
    $m->query("SELECT option_value FROM wp_options WHERE option_name = 'siteurl'")->fetch_row();
    $m->close();
    $n++;
}
echo $n, "\n";
