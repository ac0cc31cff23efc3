// CollectiveWatchdog: ends a rank stuck in a collective whose peers stopped answering.
//
// MPI collectives have no timeout: when a peer's host is lost or cut off, TCP to it stays silent
// and every other rank waits in MPI_Allreduce forever — the job hangs without a word. Healthy
// ranks complete a collective at least every ~50 ms (the step agreement runs even when idle), so
// a collective that has not completed for `timeout` means a peer is gone. The watchdog then says
// so and ends this process (exit 75): Open MPI ends the whole job when a rank exits, and a
// supervisor (`streamrec supervise`) restarts it on the hosts that are still there. Not
// MPI_Abort: it may itself wait on the unreachable peer.

import Foundation
import Logging
import Synchronization

public final class CollectiveWatchdog: @unchecked Sendable {
    /// The exit status of a rank the watchdog ended (EX_TEMPFAIL: restart and it may work).
    public static let exitStatus: Int32 = 75
    let timeout: Duration
    /// Shared with the watching thread.
    private final class State: Sendable {
        /// When the current collective started (nanoseconds of the monotonic clock); 0 = none.
        let enteredAt = Atomic<UInt64>(0)
        let running = Atomic<Bool>(true)
        /// Who is waiting (e.g. "rank 1/2"), set with each watched call: ranks change on joins.
        let name = Mutex<String>("rank")
    }
    private let state = State()

    /// The line goes to `logger` (critical) before the rank ends; `onTimeout` replaces the exit (tests).
    public init(timeout: Duration, logger: Logger = Logger(label: "train"), onTimeout: (@Sendable (String) -> Void)? = nil) {
        self.timeout = timeout
        let limit = UInt64(timeout.components.seconds) * 1_000_000_000 + UInt64(timeout.components.attoseconds / 1_000_000_000)
        let thread = Thread { [state] in
            while state.running.load(ordering: .relaxed) {
                Thread.sleep(forTimeInterval: 0.25)
                let t = state.enteredAt.load(ordering: .relaxed)
                guard t != 0, DispatchTime.now().uptimeNanoseconds - t > limit else { continue }
                let line = "Error (\(state.name.withLock { $0 })): no answer from the other ranks for \(Int(timeout.components.seconds)) s inside a "
                    + "collective — a rank's host was lost or cut off, or a rank was stopped. Ending this rank so that mpirun ends "
                    + "the job; `streamrec supervise` restarts it on the hosts that answer (--peer-timeout sets the limit)"
                if let onTimeout { onTimeout(line); state.running.store(false, ordering: .relaxed); return }
                logger.critical("\(line)")
                _exit(CollectiveWatchdog.exitStatus)
            }
        }
        thread.name = "streamrec-collective-watchdog"
        thread.start()
    }

    /// Runs `body` (one or more collectives) under the watch; `name` says who waits.
    public func watch<T>(as name: String, _ body: () throws -> T) rethrows -> T {
        state.name.withLock { $0 = name }
        state.enteredAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
        defer { state.enteredAt.store(0, ordering: .relaxed) }
        return try body()
    }

    /// Stops the watching thread (the process ends it otherwise).
    public func stop() { state.running.store(false, ordering: .relaxed) }
    deinit { stop() }
}
