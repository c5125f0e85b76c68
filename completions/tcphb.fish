# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tcphb_global_optspecs
    string join \n f/format= h/help V/version
end

function __fish_tcphb_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tcphb_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tcphb_using_subcommand
    set -l cmd (__fish_tcphb_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tcphb -n "__fish_tcphb_needs_command" -s f -l format -d 'Output format' -r -f -a "table\t'Human table (default)'
json\t'One JSON object (JSON lines for `listen` events)'
csv\t'Comma-separated values with a header row'
markdown\t'A Markdown table, for runbooks and tickets'"
complete -c tcphb -n "__fish_tcphb_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcphb -n "__fish_tcphb_needs_command" -s V -l version -d 'Print version'
complete -c tcphb -n "__fish_tcphb_needs_command" -f -a "listen" -d 'Accept connections, answer heartbeats (and send them with --heartbeat), report each dead client'
complete -c tcphb -n "__fish_tcphb_needs_command" -f -a "connect" -d 'Connect to a peer and wait until it dies (or --duration passes), then report what noticed and when'
complete -c tcphb -n "__fish_tcphb_needs_command" -f -a "compare" -d 'Build a private lab (client — router — server namespaces), cut the link for real, and print every strategy\'s detection time side by side (Linux; root or unprivileged user namespaces)'
complete -c tcphb -n "__fish_tcphb_needs_command" -f -a "probe" -d 'Report what decides dead-peer detection on a path: kernel defaults, measured RTT/RTO, effective settings, predictions per mechanism; recommend settings, find the path\'s idle timeout, watch for ICMP warnings'
complete -c tcphb -n "__fish_tcphb_needs_command" -f -a "audit" -d 'Read the detection settings and live state of a running service\'s TCP connections (Linux), predict when each would notice a dead peer, and flag the ones at risk or already in trouble'
complete -c tcphb -n "__fish_tcphb_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -s k -l keepalive -d 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system\'s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -s u -l user-timeout -d 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -s H -l heartbeat -d 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -l max-conns -d 'Hold at most this many connections; further ones are accepted and closed at once, and counted' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -l rcvbuf -d 'Fix each connection\'s receive buffer at SIZE bytes (SO_RCVBUF; the kernel doubles it for its own overhead) instead of letting it grow: when this process is frozen (SIGSTOP), a busy client\'s window then closes within a fraction of a second. The lab\'s peer uses 256 KiB' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -s f -l format -d 'Output format' -r -f -a "table\t'Human table (default)'
json\t'One JSON object (JSON lines for `listen` events)'
csv\t'Comma-separated values with a header row'
markdown\t'A Markdown table, for runbooks and tickets'"
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -l rst-on-exit -d 'Close connections with RST (SO_LINGER 0) when this process ends, even by SIGKILL — as a rebooting host forgets them — instead of the usual FIN'
complete -c tcphb -n "__fish_tcphb_using_subcommand listen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s k -l keepalive -d 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system\'s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s u -l user-timeout -d 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s H -l heartbeat -d 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -l ping -d 'Speak the heartbeat in this service\'s own protocol (needs --heartbeat): redis (PING → +PONG), memcached (version), http (HEAD --path, or OPTIONS * with --path \'*\'), h2 (HTTP/2 PING frames; gRPC servers too), websocket (upgrade on --path, then ping frames), mqtt (CONNECT, then PINGREQ); line is tcphb\'s own `PING n`' -r -f -a "line\t''
redis\t''
memcached\t''
http\t''
h2\t''
websocket\t''
mqtt\t''"
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -l path -d 'The path an http heartbeat requests (`*`: OPTIONS *) and a websocket one upgrades on' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -l ca -d 'With --tls: trust the CA certificates in this PEM file instead of the system\'s roots (e.g. a self-signed server certificate)' -r -F
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s l -l load -d 'idle: send nothing but probes/heartbeats; busy: keep writing, so data is in flight when the link dies' -r -f -a "idle\t'Nothing to send: only keepalive probes or heartbeats put packets on the wire'
busy\t'Keeps writing, so data is unacknowledged after the cut (keepalive stays silent then)'"
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s d -l duration -d 'Stop watching after this long and exit 0 if the peer is still alive (default: watch until it dies)' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -l connect-timeout -d 'Give up connecting after this long' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s n -l connections -d 'Open this many connections with the same strategy and report the distribution (e.g. to load a `tcphb listen`); the open-file limit is raised as needed' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s f -l format -d 'Output format' -r -f -a "table\t'Human table (default)'
json\t'One JSON object (JSON lines for `listen` events)'
csv\t'Comma-separated values with a header row'
markdown\t'A Markdown table, for runbooks and tickets'"
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -l tls -d 'Wrap the heartbeat\'s protocol in TLS (system roots; SNI and the name checked from HOST; ALPN h2 for --ping h2, http/1.1 for http and websocket)'
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -l insecure -d 'With --tls: do not verify the server\'s certificate at all (a test server; never in production)'
complete -c tcphb -n "__fish_tcphb_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -s s -l strategy -d 'A strategy spec to compare (repeat the flag for several). Default: none, os, ka=1s,1s,3, uto=3s, ka=1s,1s,3+uto=2s, hb=500ms,3' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -l fault -d 'Faults to make, comma-separated' -r -f -a "blackhole\t'Silent drop both ways: cable pulled, power lost, dead router'
unreachable\t'A router answers ICMP host unreachable'
prohibit\t'A router answers ICMP administratively prohibited'
linkdown\t'The local link loses carrier'
reboot\t'The peer forgets the connection and answers RST once the path is back'
freeze\t'The peer process hangs; its kernel still ACKs'
crash\t'The peer process dies; its kernel sends FIN (idle) or RST over unread data (busy)'
nat-expiry\t'A stateful middlebox forgets an idle flow and drops its packets'"
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -s l -l load -d 'Loads to run, comma-separated' -r -f -a "idle\t'Nothing to send: only keepalive probes or heartbeats put packets on the wire'
busy\t'Keeps writing, so data is unacknowledged after the cut (keepalive stays silent then)'"
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -s r -l repeat -d 'Runs per cell, each in a fresh lab; cells show the median and min–max' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -l deadline -d 'After the cut, how long to wait before a cell is `never`' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -l warmup -d 'Quiet time before the cut, so keepalive and heartbeats have been exchanged' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -l nat-idle -d 'nat-expiry: how long the router keeps an idle flow (whole seconds)' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -l server -d 'Run your own server in the lab\'s server namespace instead of `tcphb listen`, and measure when *it* notices each dead client (observed as `audit --watch` does). `{addr}` and `{port}` are replaced by the address and port it must listen on; run through `sh -c`. E.g. \'redis-server --bind {addr} --port {port} --save "" --tcp-keepalive 3\'' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -l svg -d 'Also draw a timeline per fault to FILE (SVG): a row per strategy and load, the packets each connection sent after the cut (keepalive probes, retransmissions, heartbeats), the instant it noticed, its predicted band and the deadline. The file is created before the lab is built' -r -F
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -s f -l format -d 'Output format' -r -f -a "table\t'Human table (default)'
json\t'One JSON object (JSON lines for `listen` events)'
csv\t'Comma-separated values with a header row'
markdown\t'A Markdown table, for runbooks and tickets'"
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -l wide -d 'One wide table (fault × load columns) instead of one table per load fitted to 80 columns'
complete -c tcphb -n "__fish_tcphb_using_subcommand compare" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s k -l keepalive -d 'TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system\'s defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s u -l user-timeout -d 'TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s H -l heartbeat -d 'Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare the peer dead after MISSES intervals of silence' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l ping -d 'Speak the heartbeat in this service\'s own protocol (needs --heartbeat): redis (PING → +PONG), memcached (version), http (HEAD --path, or OPTIONS * with --path \'*\'), h2 (HTTP/2 PING frames; gRPC servers too), websocket (upgrade on --path, then ping frames), mqtt (CONNECT, then PINGREQ); line is tcphb\'s own `PING n`' -r -f -a "line\t''
redis\t''
memcached\t''
http\t''
h2\t''
websocket\t''
mqtt\t''"
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l path -d 'The path an http heartbeat requests (`*`: OPTIONS *) and a websocket one upgrades on' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l ca -d 'With --tls: trust the CA certificates in this PEM file instead of the system\'s roots (e.g. a self-signed server certificate)' -r -F
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l os -d 'Predict offline what the strategy flags do on this OS, with its defaults and rules (Windows keepalive in ms with 10 fixed probes; macOS whole seconds, TCP_RXT_CONNDROPTIME for the user timeout): no HOST:PORT, no socket opened' -r -f -a "linux\t''
macos\t''
windows\t''"
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s w -l detect-within -d 'Recommend settings (printed as flags) that notice a dead peer within this long, idle or busy, on this path — and keep idle traffic under the idle timeout found by --idle-timeout' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s i -l idle-timeout -d 'Find how long the path keeps an idle connection (NAT/firewall idle timeout), trying idle times up to MAX; the run takes about MAX (at most MAX plus two reply timeouts and 0.5 s). Against any TCP server: a peer that answers PING lines is tested with them, any other with the kernel\'s keepalive probe (Linux, idle times from 1 s). A server closing idle connections itself is reported apart, with its time' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l idle-method -d 'The test packet of --idle-timeout: `ping` (a PING line: tcphb listen, echo services; with --ping PROTO the service\'s own ping), `keepalive` (a TCP keepalive probe, no data: any TCP server; Linux), or `auto`: ping if the peer answers one, else keepalive' -r -f -a "auto\t''
ping\t''
keepalive\t''"
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s d -l duration -d 'How long --recverr keeps the connection busy' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l connect-timeout -d 'Give up connecting after this long' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s f -l format -d 'Output format' -r -f -a "table\t'Human table (default)'
json\t'One JSON object (JSON lines for `listen` events)'
csv\t'Comma-separated values with a header row'
markdown\t'A Markdown table, for runbooks and tickets'"
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l tls -d 'Wrap the heartbeat\'s protocol in TLS (system roots; SNI and the name checked from HOST; ALPN h2 for --ping h2, http/1.1 for http and websocket)'
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l insecure -d 'With --tls: do not verify the server\'s certificate at all (a test server; never in production)'
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l verify -d 'With --detect-within: run the recommended settings in the lab (the faults of compare, idle and busy, 3 runs each) and check the measured worst case against the deadline; exit 6 if missed'
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -l recverr -d 'Linux: set IP_RECVERR, keep the connection busy for --duration, and report ICMP errors from routers as they arrive (soft errors: the connection is not dead yet). Needs a tcphb listen or an echo service (it sends DATA lines)'
complete -c tcphb -n "__fish_tcphb_using_subcommand probe" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -s p -l pid -d 'A process whose connections to audit (repeat for several)' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -l port -d 'Audit the connections on this local port (any process)' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -l peer -d 'Only connections to this peer address (IP, without port)' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -s w -l detect-within -d 'Count the connections that would notice a dead peer later than this (idle or busy)' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -s d -l duration -d 'With --watch: stop after this long (100ms–30d). Default: until Ctrl-C' -r
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -s f -l format -d 'Output format' -r -f -a "table\t'Human table (default)'
json\t'One JSON object (JSON lines for `listen` events)'
csv\t'Comma-separated values with a header row'
markdown\t'A Markdown table, for runbooks and tickets'"
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -l watch -d 'Follow the connections (and those opened later) and print an event as each one ends: which mechanism ended it, judged from its last state, its silence before the end and the prediction beside it. Stops at Ctrl-C or after --duration'
complete -c tcphb -n "__fish_tcphb_using_subcommand audit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcphb -n "__fish_tcphb_using_subcommand help; and not __fish_seen_subcommand_from listen connect compare probe audit help" -f -a "listen" -d 'Accept connections, answer heartbeats (and send them with --heartbeat), report each dead client'
complete -c tcphb -n "__fish_tcphb_using_subcommand help; and not __fish_seen_subcommand_from listen connect compare probe audit help" -f -a "connect" -d 'Connect to a peer and wait until it dies (or --duration passes), then report what noticed and when'
complete -c tcphb -n "__fish_tcphb_using_subcommand help; and not __fish_seen_subcommand_from listen connect compare probe audit help" -f -a "compare" -d 'Build a private lab (client — router — server namespaces), cut the link for real, and print every strategy\'s detection time side by side (Linux; root or unprivileged user namespaces)'
complete -c tcphb -n "__fish_tcphb_using_subcommand help; and not __fish_seen_subcommand_from listen connect compare probe audit help" -f -a "probe" -d 'Report what decides dead-peer detection on a path: kernel defaults, measured RTT/RTO, effective settings, predictions per mechanism; recommend settings, find the path\'s idle timeout, watch for ICMP warnings'
complete -c tcphb -n "__fish_tcphb_using_subcommand help; and not __fish_seen_subcommand_from listen connect compare probe audit help" -f -a "audit" -d 'Read the detection settings and live state of a running service\'s TCP connections (Linux), predict when each would notice a dead peer, and flag the ones at risk or already in trouble'
complete -c tcphb -n "__fish_tcphb_using_subcommand help; and not __fish_seen_subcommand_from listen connect compare probe audit help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
