
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'tcphb' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'tcphb'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'tcphb' {
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('listen', 'listen', [CompletionResultType]::ParameterValue, 'Accept connections, answer heartbeats (and send them with --heartbeat), report each dead client')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Connect to a peer and wait until it dies (or --duration passes), then report what noticed and when')
            [CompletionResult]::new('compare', 'compare', [CompletionResultType]::ParameterValue, 'Build a private lab (client — router — server namespaces), cut the link for real, and print every strategy''s detection time side by side (Linux; root or unprivileged user namespaces)')
            [CompletionResult]::new('probe', 'probe', [CompletionResultType]::ParameterValue, 'Report what decides dead-peer detection on a path: kernel defaults, measured RTT/RTO, effective settings, predictions per mechanism; recommend settings, find the path''s idle timeout, watch for ICMP warnings')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read the detection settings and live state of a running service''s TCP connections (Linux), predict when each would notice a dead peer, and flag the ones at risk or already in trouble')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tcphb;listen' {
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds')
            [CompletionResult]::new('--keepalive', '--keepalive', [CompletionResultType]::ParameterName, 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds')
            [CompletionResult]::new('-u', '-u', [CompletionResultType]::ParameterName, 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped')
            [CompletionResult]::new('--user-timeout', '--user-timeout', [CompletionResultType]::ParameterName, 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped')
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence')
            [CompletionResult]::new('--max-conns', '--max-conns', [CompletionResultType]::ParameterName, 'Hold at most this many connections; further ones are accepted and closed at once, and counted')
            [CompletionResult]::new('--rcvbuf', '--rcvbuf', [CompletionResultType]::ParameterName, 'Fix each connection''s receive buffer at SIZE bytes (SO_RCVBUF; the kernel doubles it for its own overhead) instead of letting it grow: when this process is frozen (SIGSTOP), a busy client''s window then closes within a fraction of a second. The lab''s peer uses 256 KiB')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--rst-on-exit', '--rst-on-exit', [CompletionResultType]::ParameterName, 'Close connections with RST (SO_LINGER 0) when this process ends, even by SIGKILL — as a rebooting host forgets them — instead of the usual FIN')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'tcphb;connect' {
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds')
            [CompletionResult]::new('--keepalive', '--keepalive', [CompletionResultType]::ParameterName, 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds')
            [CompletionResult]::new('-u', '-u', [CompletionResultType]::ParameterName, 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped')
            [CompletionResult]::new('--user-timeout', '--user-timeout', [CompletionResultType]::ParameterName, 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped')
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence')
            [CompletionResult]::new('--ping', '--ping', [CompletionResultType]::ParameterName, 'Speak the heartbeat in this service''s own protocol (needs --heartbeat): redis (PING → +PONG), memcached (version), http (HEAD --path, or OPTIONS * with --path ''*''), h2 (HTTP/2 PING frames; gRPC servers too), websocket (upgrade on --path, then ping frames), mqtt (CONNECT, then PINGREQ); line is tcphb''s own `PING n`')
            [CompletionResult]::new('--path', '--path', [CompletionResultType]::ParameterName, 'The path an http heartbeat requests (`*`: OPTIONS *) and a websocket one upgrades on')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'With --tls: trust the CA certificates in this PEM file instead of the system''s roots (e.g. a self-signed server certificate)')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'idle: send nothing but probes/heartbeats; busy: keep writing, so data is in flight when the link dies')
            [CompletionResult]::new('--load', '--load', [CompletionResultType]::ParameterName, 'idle: send nothing but probes/heartbeats; busy: keep writing, so data is in flight when the link dies')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'Stop watching after this long and exit 0 if the peer is still alive (default: watch until it dies)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Stop watching after this long and exit 0 if the peer is still alive (default: watch until it dies)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up connecting after this long')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Open this many connections with the same strategy and report the distribution (e.g. to load a `tcphb listen`); the open-file limit is raised as needed')
            [CompletionResult]::new('--connections', '--connections', [CompletionResultType]::ParameterName, 'Open this many connections with the same strategy and report the distribution (e.g. to load a `tcphb listen`); the open-file limit is raised as needed')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--tls', '--tls', [CompletionResultType]::ParameterName, 'Wrap the heartbeat''s protocol in TLS (system roots; SNI and the name checked from HOST; ALPN h2 for --ping h2, http/1.1 for http and websocket)')
            [CompletionResult]::new('--insecure', '--insecure', [CompletionResultType]::ParameterName, 'With --tls: do not verify the server''s certificate at all (a test server; never in production)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'tcphb;compare' {
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'A strategy spec to compare (repeat the flag for several). Default: none, os, ka=1s,1s,3, uto=3s, ka=1s,1s,3+uto=2s, hb=500ms,3')
            [CompletionResult]::new('--strategy', '--strategy', [CompletionResultType]::ParameterName, 'A strategy spec to compare (repeat the flag for several). Default: none, os, ka=1s,1s,3, uto=3s, ka=1s,1s,3+uto=2s, hb=500ms,3')
            [CompletionResult]::new('--fault', '--fault', [CompletionResultType]::ParameterName, 'Faults to make, comma-separated')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'Loads to run, comma-separated')
            [CompletionResult]::new('--load', '--load', [CompletionResultType]::ParameterName, 'Loads to run, comma-separated')
            [CompletionResult]::new('-r', '-r', [CompletionResultType]::ParameterName, 'Runs per cell, each in a fresh lab; cells show the median and min–max')
            [CompletionResult]::new('--repeat', '--repeat', [CompletionResultType]::ParameterName, 'Runs per cell, each in a fresh lab; cells show the median and min–max')
            [CompletionResult]::new('--deadline', '--deadline', [CompletionResultType]::ParameterName, 'After the cut, how long to wait before a cell is `never`')
            [CompletionResult]::new('--warmup', '--warmup', [CompletionResultType]::ParameterName, 'Quiet time before the cut, so keepalive and heartbeats have been exchanged')
            [CompletionResult]::new('--nat-idle', '--nat-idle', [CompletionResultType]::ParameterName, 'nat-expiry: how long the router keeps an idle flow (whole seconds)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Run your own server in the lab''s server namespace instead of `tcphb listen`, and measure when *it* notices each dead client (observed as `audit --watch` does). `{addr}` and `{port}` are replaced by the address and port it must listen on; run through `sh -c`. E.g. ''redis-server --bind {addr} --port {port} --save "" --tcp-keepalive 3''')
            [CompletionResult]::new('--svg', '--svg', [CompletionResultType]::ParameterName, 'Also draw a timeline per fault to FILE (SVG): a row per strategy and load, the packets each connection sent after the cut (keepalive probes, retransmissions, heartbeats), the instant it noticed, its predicted band and the deadline. The file is created before the lab is built')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'One wide table (fault × load columns) instead of one table per load fitted to 80 columns')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'tcphb;probe' {
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds')
            [CompletionResult]::new('--keepalive', '--keepalive', [CompletionResultType]::ParameterName, 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system''s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds')
            [CompletionResult]::new('-u', '-u', [CompletionResultType]::ParameterName, 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped')
            [CompletionResult]::new('--user-timeout', '--user-timeout', [CompletionResultType]::ParameterName, 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped')
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence')
            [CompletionResult]::new('--ping', '--ping', [CompletionResultType]::ParameterName, 'Speak the heartbeat in this service''s own protocol (needs --heartbeat): redis (PING → +PONG), memcached (version), http (HEAD --path, or OPTIONS * with --path ''*''), h2 (HTTP/2 PING frames; gRPC servers too), websocket (upgrade on --path, then ping frames), mqtt (CONNECT, then PINGREQ); line is tcphb''s own `PING n`')
            [CompletionResult]::new('--path', '--path', [CompletionResultType]::ParameterName, 'The path an http heartbeat requests (`*`: OPTIONS *) and a websocket one upgrades on')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'With --tls: trust the CA certificates in this PEM file instead of the system''s roots (e.g. a self-signed server certificate)')
            [CompletionResult]::new('--os', '--os', [CompletionResultType]::ParameterName, 'Predict offline what the strategy flags do on this OS, with its defaults and rules (Windows keepalive in ms with 10 fixed probes; macOS whole seconds, TCP_RXT_CONNDROPTIME for the user timeout): no HOST:PORT, no socket opened')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Recommend settings (printed as flags) that notice a dead peer within this long, idle or busy, on this path — and keep idle traffic under the idle timeout found by --idle-timeout')
            [CompletionResult]::new('--detect-within', '--detect-within', [CompletionResultType]::ParameterName, 'Recommend settings (printed as flags) that notice a dead peer within this long, idle or busy, on this path — and keep idle traffic under the idle timeout found by --idle-timeout')
            [CompletionResult]::new('-i', '-i', [CompletionResultType]::ParameterName, 'Find how long the path keeps an idle connection (NAT/firewall idle timeout), trying idle times up to MAX; the run takes about MAX (at most MAX plus two reply timeouts and 0.5 s). Against any TCP server: a peer that answers PING lines is tested with them, any other with the kernel''s keepalive probe (Linux, idle times from 1 s). A server closing idle connections itself is reported apart, with its time')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Find how long the path keeps an idle connection (NAT/firewall idle timeout), trying idle times up to MAX; the run takes about MAX (at most MAX plus two reply timeouts and 0.5 s). Against any TCP server: a peer that answers PING lines is tested with them, any other with the kernel''s keepalive probe (Linux, idle times from 1 s). A server closing idle connections itself is reported apart, with its time')
            [CompletionResult]::new('--idle-method', '--idle-method', [CompletionResultType]::ParameterName, 'The test packet of --idle-timeout: `ping` (a PING line: tcphb listen, echo services; with --ping PROTO the service''s own ping), `keepalive` (a TCP keepalive probe, no data: any TCP server; Linux), or `auto`: ping if the peer answers one, else keepalive')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'How long --recverr keeps the connection busy')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'How long --recverr keeps the connection busy')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up connecting after this long')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--tls', '--tls', [CompletionResultType]::ParameterName, 'Wrap the heartbeat''s protocol in TLS (system roots; SNI and the name checked from HOST; ALPN h2 for --ping h2, http/1.1 for http and websocket)')
            [CompletionResult]::new('--insecure', '--insecure', [CompletionResultType]::ParameterName, 'With --tls: do not verify the server''s certificate at all (a test server; never in production)')
            [CompletionResult]::new('--verify', '--verify', [CompletionResultType]::ParameterName, 'With --detect-within: run the recommended settings in the lab (the faults of compare, idle and busy, 3 runs each) and check the measured worst case against the deadline; exit 6 if missed')
            [CompletionResult]::new('--recverr', '--recverr', [CompletionResultType]::ParameterName, 'Linux: set IP_RECVERR, keep the connection busy for --duration, and report ICMP errors from routers as they arrive (soft errors: the connection is not dead yet). Needs a tcphb listen or an echo service (it sends DATA lines)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'tcphb;audit' {
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'A process whose connections to audit (repeat for several)')
            [CompletionResult]::new('--pid', '--pid', [CompletionResultType]::ParameterName, 'A process whose connections to audit (repeat for several)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Audit the connections on this local port (any process)')
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'Only connections to this peer address (IP, without port)')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Count the connections that would notice a dead peer later than this (idle or busy)')
            [CompletionResult]::new('--detect-within', '--detect-within', [CompletionResultType]::ParameterName, 'Count the connections that would notice a dead peer later than this (idle or busy)')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'With --watch: stop after this long (100ms–30d). Default: until Ctrl-C')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'With --watch: stop after this long (100ms–30d). Default: until Ctrl-C')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Follow the connections (and those opened later) and print an event as each one ends: which mechanism ended it, judged from its last state, its silence before the end and the prediction beside it. Stops at Ctrl-C or after --duration')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'tcphb;help' {
            [CompletionResult]::new('listen', 'listen', [CompletionResultType]::ParameterValue, 'Accept connections, answer heartbeats (and send them with --heartbeat), report each dead client')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Connect to a peer and wait until it dies (or --duration passes), then report what noticed and when')
            [CompletionResult]::new('compare', 'compare', [CompletionResultType]::ParameterValue, 'Build a private lab (client — router — server namespaces), cut the link for real, and print every strategy''s detection time side by side (Linux; root or unprivileged user namespaces)')
            [CompletionResult]::new('probe', 'probe', [CompletionResultType]::ParameterValue, 'Report what decides dead-peer detection on a path: kernel defaults, measured RTT/RTO, effective settings, predictions per mechanism; recommend settings, find the path''s idle timeout, watch for ICMP warnings')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read the detection settings and live state of a running service''s TCP connections (Linux), predict when each would notice a dead peer, and flag the ones at risk or already in trouble')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tcphb;help;listen' {
            break
        }
        'tcphb;help;connect' {
            break
        }
        'tcphb;help;compare' {
            break
        }
        'tcphb;help;probe' {
            break
        }
        'tcphb;help;audit' {
            break
        }
        'tcphb;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
