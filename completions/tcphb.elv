
use builtin;
use str;

set edit:completion:arg-completer[tcphb] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'tcphb'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'tcphb'= {
            cand -f 'Output format'
            cand --format 'Output format'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand listen 'Accept connections, answer heartbeats (and send them with --heartbeat), report each dead client'
            cand connect 'Connect to a peer and wait until it dies (or --duration passes), then report what noticed and when'
            cand compare 'Build a private lab (client — router — server namespaces), cut the link for real, and print every strategy''s detection time side by side (Linux; root or unprivileged user namespaces)'
            cand probe 'Report what decides dead-peer detection on a path: kernel defaults, measured RTT/RTO, effective settings, predictions per mechanism; recommend settings, find the path''s idle timeout, watch for ICMP warnings'
            cand audit 'Read the detection settings and live state of a running service''s TCP connections (Linux), predict when each would notice a dead peer, and flag the ones at risk or already in trouble'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tcphb;listen'= {
            cand -k 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds'
            cand --keepalive 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds'
            cand -u 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped'
            cand --user-timeout 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped'
            cand -H 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence'
            cand --heartbeat 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence'
            cand --max-conns 'Hold at most this many connections; further ones are accepted and closed at once, and counted'
            cand --rcvbuf 'Fix each connection''s receive buffer at SIZE bytes (SO_RCVBUF; the kernel doubles it for its own overhead) instead of letting it grow: when this process is frozen (SIGSTOP), a busy client''s window then closes within a fraction of a second. The lab''s peer uses 256 KiB'
            cand -f 'Output format'
            cand --format 'Output format'
            cand --rst-on-exit 'Close connections with RST (SO_LINGER 0) when this process ends, even by SIGKILL — as a rebooting host forgets them — instead of the usual FIN'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'tcphb;connect'= {
            cand -k 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds'
            cand --keepalive 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds'
            cand -u 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped'
            cand --user-timeout 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped'
            cand -H 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence'
            cand --heartbeat 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence'
            cand --ping 'Speak the heartbeat in this service''s own protocol (needs --heartbeat): redis (PING → +PONG), memcached (version), http (HEAD --path, or OPTIONS * with --path ''*''), h2 (HTTP/2 PING frames; gRPC servers too), websocket (upgrade on --path, then ping frames), mqtt (CONNECT, then PINGREQ); line is tcphb''s own `PING n`'
            cand --path 'The path an http heartbeat requests (`*`: OPTIONS *) and a websocket one upgrades on'
            cand --ca 'With --tls: trust the CA certificates in this PEM file instead of the system''s roots (e.g. a self-signed server certificate)'
            cand -l 'idle: send nothing but probes/heartbeats; busy: keep writing, so data is in flight when the link dies'
            cand --load 'idle: send nothing but probes/heartbeats; busy: keep writing, so data is in flight when the link dies'
            cand -d 'Stop watching after this long and exit 0 if the peer is still alive (default: watch until it dies)'
            cand --duration 'Stop watching after this long and exit 0 if the peer is still alive (default: watch until it dies)'
            cand --connect-timeout 'Give up connecting after this long'
            cand -n 'Open this many connections with the same strategy and report the distribution (e.g. to load a `tcphb listen`); the open-file limit is raised as needed'
            cand --connections 'Open this many connections with the same strategy and report the distribution (e.g. to load a `tcphb listen`); the open-file limit is raised as needed'
            cand -f 'Output format'
            cand --format 'Output format'
            cand --tls 'Wrap the heartbeat''s protocol in TLS (system roots; SNI and the name checked from HOST; ALPN h2 for --ping h2, http/1.1 for http and websocket)'
            cand --insecure 'With --tls: do not verify the server''s certificate at all (a test server; never in production)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'tcphb;compare'= {
            cand -s 'A strategy spec to compare (repeat the flag for several). Default: none, os, ka=1s,1s,3, uto=3s, ka=1s,1s,3+uto=2s, hb=500ms,3'
            cand --strategy 'A strategy spec to compare (repeat the flag for several). Default: none, os, ka=1s,1s,3, uto=3s, ka=1s,1s,3+uto=2s, hb=500ms,3'
            cand --fault 'Faults to make, comma-separated'
            cand -l 'Loads to run, comma-separated'
            cand --load 'Loads to run, comma-separated'
            cand -r 'Runs per cell, each in a fresh lab; cells show the median and min–max'
            cand --repeat 'Runs per cell, each in a fresh lab; cells show the median and min–max'
            cand --deadline 'After the cut, how long to wait before a cell is `never`'
            cand --warmup 'Quiet time before the cut, so keepalive and heartbeats have been exchanged'
            cand --nat-idle 'nat-expiry: how long the router keeps an idle flow (whole seconds)'
            cand --server 'Run your own server in the lab''s server namespace instead of `tcphb listen`, and measure when *it* notices each dead client (observed as `audit --watch` does). `{addr}` and `{port}` are replaced by the address and port it must listen on; run through `sh -c`. E.g. ''redis-server --bind {addr} --port {port} --save "" --tcp-keepalive 3'''
            cand --svg 'Also draw a timeline per fault to FILE (SVG): a row per strategy and load, the packets each connection sent after the cut (keepalive probes, retransmissions, heartbeats), the instant it noticed, its predicted band and the deadline. The file is created before the lab is built'
            cand -f 'Output format'
            cand --format 'Output format'
            cand --wide 'One wide table (fault × load columns) instead of one table per load fitted to 80 columns'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'tcphb;probe'= {
            cand -k 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds'
            cand --keepalive 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds'
            cand -u 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped'
            cand --user-timeout 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped'
            cand -H 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence'
            cand --heartbeat 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence'
            cand --ping 'Speak the heartbeat in this service''s own protocol (needs --heartbeat): redis (PING → +PONG), memcached (version), http (HEAD --path, or OPTIONS * with --path ''*''), h2 (HTTP/2 PING frames; gRPC servers too), websocket (upgrade on --path, then ping frames), mqtt (CONNECT, then PINGREQ); line is tcphb''s own `PING n`'
            cand --path 'The path an http heartbeat requests (`*`: OPTIONS *) and a websocket one upgrades on'
            cand --ca 'With --tls: trust the CA certificates in this PEM file instead of the system''s roots (e.g. a self-signed server certificate)'
            cand --os 'Predict offline what the strategy flags do on this OS, with its defaults and rules (Windows keepalive in ms with 10 fixed probes; macOS whole seconds, TCP_RXT_CONNDROPTIME for the user timeout): no HOST:PORT, no socket opened'
            cand -w 'Recommend settings (printed as flags) that notice a dead peer within this long, idle or busy, on this path — and keep idle traffic under the idle timeout found by --idle-timeout'
            cand --detect-within 'Recommend settings (printed as flags) that notice a dead peer within this long, idle or busy, on this path — and keep idle traffic under the idle timeout found by --idle-timeout'
            cand -i 'Find how long the path keeps an idle connection (NAT/firewall idle timeout), trying idle times up to MAX; the run takes about MAX (at most MAX plus two reply timeouts and 0.5 s). Against any TCP server: a peer that answers PING lines is tested with them, any other with the kernel''s keepalive probe (Linux, idle times from 1 s). A server closing idle connections itself is reported apart, with its time'
            cand --idle-timeout 'Find how long the path keeps an idle connection (NAT/firewall idle timeout), trying idle times up to MAX; the run takes about MAX (at most MAX plus two reply timeouts and 0.5 s). Against any TCP server: a peer that answers PING lines is tested with them, any other with the kernel''s keepalive probe (Linux, idle times from 1 s). A server closing idle connections itself is reported apart, with its time'
            cand --idle-method 'The test packet of --idle-timeout: `ping` (a PING line: tcphb listen, echo services; with --ping PROTO the service''s own ping), `keepalive` (a TCP keepalive probe, no data: any TCP server; Linux), or `auto`: ping if the peer answers one, else keepalive'
            cand -d 'How long --recverr keeps the connection busy'
            cand --duration 'How long --recverr keeps the connection busy'
            cand --connect-timeout 'Give up connecting after this long'
            cand -f 'Output format'
            cand --format 'Output format'
            cand --tls 'Wrap the heartbeat''s protocol in TLS (system roots; SNI and the name checked from HOST; ALPN h2 for --ping h2, http/1.1 for http and websocket)'
            cand --insecure 'With --tls: do not verify the server''s certificate at all (a test server; never in production)'
            cand --verify 'With --detect-within: run the recommended settings in the lab (the faults of compare, idle and busy, 3 runs each) and check the measured worst case against the deadline; exit 6 if missed'
            cand --recverr 'Linux: set IP_RECVERR, keep the connection busy for --duration, and report ICMP errors from routers as they arrive (soft errors: the connection is not dead yet). Needs a tcphb listen or an echo service (it sends DATA lines)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'tcphb;audit'= {
            cand -p 'A process whose connections to audit (repeat for several)'
            cand --pid 'A process whose connections to audit (repeat for several)'
            cand --port 'Audit the connections on this local port (any process)'
            cand --peer 'Only connections to this peer address (IP, without port)'
            cand -w 'Count the connections that would notice a dead peer later than this (idle or busy)'
            cand --detect-within 'Count the connections that would notice a dead peer later than this (idle or busy)'
            cand -d 'With --watch: stop after this long (100ms–30d). Default: until Ctrl-C'
            cand --duration 'With --watch: stop after this long (100ms–30d). Default: until Ctrl-C'
            cand -f 'Output format'
            cand --format 'Output format'
            cand --watch 'Follow the connections (and those opened later) and print an event as each one ends: which mechanism ended it, judged from its last state, its silence before the end and the prediction beside it. Stops at Ctrl-C or after --duration'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'tcphb;help'= {
            cand listen 'Accept connections, answer heartbeats (and send them with --heartbeat), report each dead client'
            cand connect 'Connect to a peer and wait until it dies (or --duration passes), then report what noticed and when'
            cand compare 'Build a private lab (client — router — server namespaces), cut the link for real, and print every strategy''s detection time side by side (Linux; root or unprivileged user namespaces)'
            cand probe 'Report what decides dead-peer detection on a path: kernel defaults, measured RTT/RTO, effective settings, predictions per mechanism; recommend settings, find the path''s idle timeout, watch for ICMP warnings'
            cand audit 'Read the detection settings and live state of a running service''s TCP connections (Linux), predict when each would notice a dead peer, and flag the ones at risk or already in trouble'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tcphb;help;listen'= {
        }
        &'tcphb;help;connect'= {
        }
        &'tcphb;help;compare'= {
        }
        &'tcphb;help;probe'= {
        }
        &'tcphb;help;audit'= {
        }
        &'tcphb;help;help'= {
        }
    ]
    $completions[$command]
}
