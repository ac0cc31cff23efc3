import Foundation
import Synchronization

/// A flag raised by SIGINT/SIGTERM, for long-running commands that stop at a clean boundary.
///
/// Processes started from other programs' worker threads (test runners, some supervisors)
/// can inherit a signal mask that blocks these signals, so they are unblocked here first.
final class StopSignal: @unchecked Sendable {
    private let raised = Atomic<Bool>(false)
    private let sources: [DispatchSourceSignal]
    private let onSignal: @Sendable (Int32) -> Void

    init(onSignal: @escaping @Sendable (Int32) -> Void = { _ in }) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        self.onSignal = onSignal
        var made: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)   // the dispatch source receives it instead
            made.append(DispatchSource.makeSignalSource(signal: sig, queue: .global()))
        }
        sources = made
        for (sig, src) in zip([SIGINT, SIGTERM], sources) {
            src.setEventHandler { [self] in
                raised.store(true, ordering: .sequentiallyConsistent)
                onSignal(sig)
            }
            src.resume()
        }
    }

    var isRaised: Bool { raised.load(ordering: .sequentiallyConsistent) }
}
