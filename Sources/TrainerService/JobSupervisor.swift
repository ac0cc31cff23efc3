// JobSupervisor: keeps an `mpirun … streamrec train …` job running (`streamrec supervise`).
//
// Open MPI ends the whole job when one rank dies (killed, its host lost, MPI_Abort): the trainer
// itself cannot heal that, so the supervisor runs the job as a child, and when it ends abnormally
// starts it again after a back-off, on the hosts that still answer. The trainer resumes from the
// newest checkpoint and re-reads from Redis what the checkpoint had not covered, so restarts keep
// exactly-once (samples_trained counts each row once). Too many failures within a window → it
// gives up and says why, rather than flapping forever.
//
// Stopping: SIGTERM/SIGINT go to rank 0 when it runs on this host (the trainer's own stop path:
// finish the step, checkpoint, stop every rank — mpirun then exits 0), else to mpirun; the
// supervisor exits with the job's status. If the job has not stopped within `stopTimeout`,
// mpirun gets SIGTERM, then SIGKILL.

import Logging
import Foundation
import Streaming
import Synchronization

/// When to restart and when to give up.
public struct RestartPolicy: Sendable, Equatable {
    /// Give up at the `maxFailures`-th abnormal end within `window` (0 = never restart).
    public var maxFailures: Int = 5
    public var window: Duration = .seconds(600)
    /// Back-off before a restart: doubles with each consecutive failure, up to `maxBackoff`.
    public var initialBackoff: Duration = .seconds(1)
    public var maxBackoff: Duration = .seconds(30)
    /// A run that lasted this long resets the back-off (it was healthy before it failed).
    public var stableAfter: Duration = .seconds(60)
    public init() {}
}

public enum RestartDecision: Sendable, Equatable {
    case restart(after: Duration)
    case giveUp(String)
}

/// The failure history and the policy's verdict on each new failure (pure: tests drive it with
/// their own clock).
public struct RestartLedger: Sendable {
    public let policy: RestartPolicy
    public private(set) var failures: [Duration] = []
    public private(set) var consecutive = 0
    public init(policy: RestartPolicy) { self.policy = policy }

    /// Records an abnormal end at `time` (any monotonic origin) of a run that lasted `ranFor`.
    public mutating func recordFailure(at time: Duration, ranFor: Duration) -> RestartDecision {
        failures.append(time)
        failures.removeAll { time - $0 >= policy.window }
        consecutive = ranFor >= policy.stableAfter ? 1 : consecutive + 1
        if policy.maxFailures == 0 { return .giveUp("restarts are off (--max-failures 0)") }
        if failures.count >= policy.maxFailures {
            return .giveUp("\(failures.count) abnormal ends within \(Int(policy.window.components.seconds)) s "
                           + "(--max-failures \(policy.maxFailures), --failure-window \(Int(policy.window.components.seconds)))")
        }
        var backoff = policy.initialBackoff
        for _ in 1..<max(1, consecutive) where backoff < policy.maxBackoff { backoff = backoff * 2 }
        return .restart(after: min(backoff, policy.maxBackoff))
    }
}

/// An Open MPI hostfile (`host slots=N …` lines, `#` comments).
public struct Hostfile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var host: String
        public var slots: Int
        /// The line as written (kept as is in the filtered file).
        public var line: String
    }
    public var entries: [Entry]

    public init(parsing text: String, path: String) throws {
        entries = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?
                .trimmingCharacters(in: .whitespaces) ?? ""
            guard !line.isEmpty else { continue }
            let words = line.split(separator: " ")
            var slots = 1
            for w in words.dropFirst() where w.hasPrefix("slots=") {
                guard let s = Int(w.dropFirst("slots=".count)), s > 0 else {
                    throw SupervisorError("\(path):\(n + 1): '\(w)' — slots must be a positive number")
                }
                slots = s
            }
            entries.append(Entry(host: String(words[0]), slots: slots, line: line))
        }
        if entries.isEmpty { throw SupervisorError("\(path) names no host (one `HOST slots=N` per line)") }
    }

    public init(entries: [Entry]) { self.entries = entries }

    public var text: String { entries.map(\.line).joined(separator: "\n") + "\n" }
    public var slots: Int { entries.reduce(0) { $0 + $1.slots } }
}

public struct SupervisorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public struct SupervisorOptions: Sendable {
    /// The job: executable and arguments. `{hostfile}` and `{np}` are replaced by the filtered
    /// hostfile's path and its slot count when `hostfile` is set.
    public var command: [String]
    public var policy = RestartPolicy()
    public var hostfile: String? = nil
    /// Run per host before each start (`{host}` replaced); hosts whose probe fails or takes more
    /// than `probeTimeout` are left out of that start.
    public var probe: String = "ssh -o BatchMode=yes -o ConnectTimeout=5 {host} true"
    public var probeTimeout: Duration = .seconds(10)
    public var stopTimeout: Duration = .seconds(60)
    public init(command: [String]) { self.command = command }
}

public final class JobSupervisor: @unchecked Sendable {
    public let options: SupervisorOptions
    let signals: ShutdownSignals
    let logger: Logger
    /// Starts so far (the first is attempt 1).
    public private(set) var starts = 0
    /// The running job's pid (0 = none), shared with the second-signal path.
    final class JobPid: Sendable { let value = Atomic<Int32>(0) }
    let jobPid = JobPid()

    public init(options: SupervisorOptions, signals: ShutdownSignals, logger: Logger) {
        self.options = options; self.signals = signals; self.logger = logger
        // A second signal ends the supervisor at once: mpirun gets it first (Open MPI's forceful
        // stop of every rank), so no job outlives its supervisor.
        let pid = jobPid
        signals.beforeForcedExit { sig in
            let p = pid.value.load(ordering: .relaxed)
            if p > 0 { kill(p, sig) }
        }
    }

    /// Runs the job until it ends normally, is stopped by a signal, or the policy gives up.
    /// Returns the exit status for the supervisor's process.
    public func run() throws -> Int32 {
        var ledger = RestartLedger(policy: options.policy)
        let origin = ContinuousClock.now
        var scratch: URL? = nil
        defer { if let scratch { try? FileManager.default.removeItem(at: scratch) } }
        while true {
            var command = options.command
            if let path = options.hostfile {
                let all = try Hostfile(parsing: try String(contentsOfFile: path, encoding: .utf8), path: path)
                let live = Hostfile(entries: all.entries.filter { probe($0.host) })
                if signals.isRaised { return 0 }
                let down = all.entries.filter { !live.entries.contains($0) }.map(\.host)
                if !down.isEmpty { logger.warning("hosts not answering the probe, left out of this start: \(down.joined(separator: ", "))") }
                if live.entries.isEmpty {
                    switch ledger.recordFailure(at: .now - origin, ranFor: .zero) {
                    case .giveUp(let why):
                        logger.error("GIVING UP: no host of \(path) answers the probe (\(options.probe)); \(why)")
                        return 1
                    case .restart(let after):
                        logger.warning("no host of \(path) answers the probe; trying again in \(describe(after))")
                        if wait(after) { return 0 }
                        continue
                    }
                }
                if scratch == nil {
                    scratch = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-supervise-\(getpid())")
                    try FileManager.default.createDirectory(at: scratch!, withIntermediateDirectories: true)
                }
                let filtered = scratch!.appendingPathComponent("hostfile")
                try live.text.write(to: filtered, atomically: true, encoding: .utf8)
                command = command.map { $0.replacingOccurrences(of: "{hostfile}", with: filtered.path)
                    .replacingOccurrences(of: "{np}", with: "\(live.slots)") }
            }
            starts += 1
            logger.info("starting the job (start \(starts)): \(command.joined(separator: " "))")
            let started = ContinuousClock.now
            let job = Process()
            job.executableURL = URL(fileURLWithPath: try resolve(command[0]))
            job.arguments = Array(command.dropFirst())
            job.standardInput = FileHandle.nullDevice
            do { try job.run() } catch {
                throw SupervisorError("cannot start \(command[0]): \(error)")
            }
            jobPid.value.store(job.processIdentifier, ordering: .relaxed)
            let stopStatus = superviseUntilExit(job)
            jobPid.value.store(0, ordering: .relaxed)
            if let stopStatus { return stopStatus }
            let ranFor = ContinuousClock.now - started
            let how = job.terminationReason == .uncaughtSignal ? "killed by signal \(job.terminationStatus)" : "exit status \(job.terminationStatus)"
            if job.terminationReason == .exit && job.terminationStatus == 0 {
                logger.info("the job ended normally after \(describe(ranFor))")
                return 0
            }
            switch ledger.recordFailure(at: .now - origin, ranFor: ranFor) {
            case .giveUp(let why):
                logger.error("GIVING UP: the job ended abnormally (\(how)) after \(describe(ranFor)); \(why). See the job's lines above for the cause.")
                return job.terminationReason == .exit ? job.terminationStatus : 128 + job.terminationStatus
            case .restart(let after):
                logger.warning(.init(stringLiteral: "the job ended abnormally (\(how)) after \(describe(ranFor)); restarting in \(describe(after)) "
                    + "(\(ledger.failures.count) of --max-failures \(options.policy.maxFailures) within the window); "
                    + "the trainer resumes from the newest checkpoint"))
                if wait(after) { return 0 }
            }
        }
    }

    /// Waits for the job; on a stop signal stops it (rank 0 first) and returns the status to exit
    /// with. Returns nil when the job ended by itself.
    func superviseUntilExit(_ job: Process) -> Int32? {
        while job.isRunning {
            if signals.isRaised {
                let rank0 = localRank0(of: job.processIdentifier)
                if let rank0 {
                    logger.info("stopping the job through rank 0 (pid \(rank0)): finish the step, checkpoint, stop")
                    kill(rank0, SIGTERM)
                } else {
                    logger.info("stopping the job (rank 0 is not on this host): SIGTERM to mpirun")
                    kill(job.processIdentifier, SIGTERM)
                }
                let deadline = ContinuousClock.now + options.stopTimeout
                while job.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
                if job.isRunning {
                    logger.warning("the job did not stop within \(describe(options.stopTimeout)); SIGTERM to mpirun, then SIGKILL")
                    kill(job.processIdentifier, SIGTERM)
                    let hard = ContinuousClock.now + .seconds(10)
                    while job.isRunning && ContinuousClock.now < hard { Thread.sleep(forTimeInterval: 0.05) }
                    if job.isRunning { kill(job.processIdentifier, SIGKILL) }
                }
                job.waitUntilExit()
                // mpirun exits 1 when it forwarded the signal itself; the stop was asked for.
                return rank0 != nil && job.terminationReason == .exit ? job.terminationStatus : 0
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        job.waitUntilExit()
        return nil
    }

    /// The local process of MPI rank 0 among `pid`'s children.
    func localRank0(of pid: Int32) -> Int32? { ProcessTree.localRanks(of: pid)[0] }

    /// Runs the probe for `host`; true if it exits 0 within the timeout.
    func probe(_ host: String) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", options.probe.replacingOccurrences(of: "{host}", with: host)]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        let deadline = ContinuousClock.now + options.probeTimeout
        while p.isRunning && ContinuousClock.now < deadline && !signals.isRaised { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); return false }
        return p.terminationReason == .exit && p.terminationStatus == 0
    }

    /// Sleeps `d` unless a stop signal arrives first (then true).
    func wait(_ d: Duration) -> Bool {
        let end = ContinuousClock.now + d
        while ContinuousClock.now < end {
            if signals.isRaised { logger.info("stopped while waiting to restart"); return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return signals.isRaised
    }

    /// An executable path: as given if it has a slash, else found on $PATH.
    func resolve(_ name: String) throws -> String {
        if name.contains("/") { return name }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw SupervisorError("\(name) is not on $PATH (install Open MPI: scripts/setup.sh)")
    }

    func describe(_ d: Duration) -> String {
        String(format: "%.1f s", d.seconds)
    }
}
