import Foundation

/// Hosts on one machine for multi-host tests: network namespaces NAME-1 … NAME-N at 10.77.0.K,
/// joined by a bridge in NAME-br (scripts/netns-hosts.sh; the machine's own network is never
/// touched). Processes run "on" host K through `ip netns exec`; `cut`/`mend` pull its cable.
public final class TestHosts: @unchecked Sendable {
    public let name: String
    public let count: Int
    let script: String
    private var processes: [BackgroundProcess] = []

    /// Whether this machine lets the tests create network namespaces (root or CAP_NET_ADMIN,
    /// iproute2). Tried once: a namespace is added and removed.
    public static let available: Bool = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else { return false }
        let probe = "srprobe\(getpid())"
        guard let r = try? runProcess(ipPath, ["netns", "add", probe], timeout: .seconds(10)), r.status == 0 else { return false }
        _ = try? runProcess(ipPath, ["netns", "del", probe], timeout: .seconds(10))
        return true
    }()

    static var ipPath: String { FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip" }

    public init(count: Int, repository: URL) throws {
        name = "sr\(getpid() % 100_000)h"
        self.count = count
        script = repository.appendingPathComponent("scripts/netns-hosts.sh").path
        _ = try? runProcess("/bin/bash", [script, "down", name], timeout: .seconds(30))
        let r = try runProcess("/bin/bash", [script, "up", name, "\(count)"], timeout: .seconds(60))
        guard r.status == 0 else { throw FixtureError("netns-hosts.sh up failed: \(r.stderr)") }
    }

    public func address(_ host: Int) -> String { "10.77.0.\(host)" }
    public func namespace(_ host: Int) -> String { "\(name)-\(host)" }

    /// An Open MPI launch agent (`--mca plm_rsh_agent PATH`) that starts daemons inside the hosts.
    public func writeLaunchAgent(to url: URL) throws {
        try "#!/bin/sh\nexec /bin/bash \(script) agent \(name) \"$@\"\n".write(to: url, atomically: true, encoding: .utf8)
        chmod(url.path, 0o755)
    }

    /// Runs a command on `host` to completion.
    public func run(_ host: Int, _ arguments: [String], environment: [String: String] = [:],
                    timeout: Duration = .seconds(120)) throws -> ProcessResult {
        try runProcess(Self.ipPath, ["netns", "exec", namespace(host)] + arguments, environment: environment, timeout: timeout)
    }

    /// Starts a command on `host` in the background (`ip netns exec` execs it: the pid is the command's).
    public func start(_ host: Int, _ arguments: [String], environment: [String: String] = [:], log: URL) throws -> BackgroundProcess {
        let p = try BackgroundProcess(Self.ipPath, ["netns", "exec", namespace(host)] + arguments, environment: environment, log: log)
        processes.append(p)
        return p
    }

    /// Pulls host K's cable (its port on the bridge goes down) / plugs it back in.
    public func cut(_ host: Int) throws { try link(host, "cut") }
    public func mend(_ host: Int) throws { try link(host, "mend") }

    private func link(_ host: Int, _ what: String) throws {
        let r = try runProcess("/bin/bash", [script, what, name, "\(host)"], timeout: .seconds(30))
        guard r.status == 0 else { throw FixtureError("netns-hosts.sh \(what) \(host) failed: \(r.stderr)") }
    }

    /// Kills what was started and removes the namespaces.
    public func destroy() {
        for p in processes { p.kill() }
        processes.removeAll()
        _ = try? runProcess("/bin/bash", [script, "down", name], timeout: .seconds(60))
    }

    deinit { destroy() }
}
