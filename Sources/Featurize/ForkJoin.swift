// ForkJoin: run one job on N threads at once and wait for all — job 0 on the caller, the others
// on helper threads that stay alive between runs (a poll batch is a few milliseconds of work,
// too short to start threads for).

import Dispatch
import Foundation

final class ForkJoin: @unchecked Sendable {
    private let helpers: Int
    private let start: [DispatchSemaphore]
    private let done: [DispatchSemaphore]
    // Written by the caller before `start` is signalled, read by helpers after: the semaphores
    // order the accesses.
    private var job: ((Int) throws -> Void)? = nil
    private var errors: [Error?]
    private var stopping = false

    init(threads: Int, name: String) {
        precondition(threads >= 1)
        helpers = threads - 1
        start = (0..<helpers).map { _ in DispatchSemaphore(value: 0) }
        done = (0..<helpers).map { _ in DispatchSemaphore(value: 0) }
        errors = Array(repeating: nil, count: helpers)
        for h in 0..<helpers {
            let thread = Thread { [self] in loop(h) }
            thread.name = "\(name)-\(h + 1)"
            thread.start()
        }
    }

    /// Runs `body(0)` here and `body(1..<threads)` on the helpers; returns when all finished.
    /// Rethrows the first error (the caller's first, then the helpers' in order).
    func run(_ body: @escaping (Int) throws -> Void) throws {
        job = body
        for h in 0..<helpers { start[h].signal() }
        var first: Error? = nil
        do { try body(0) } catch { first = error }
        for h in 0..<helpers { done[h].wait() }
        job = nil
        for h in 0..<helpers {
            if first == nil { first = errors[h] }
            errors[h] = nil
        }
        if let first { throw first }
    }

    /// Stops the helper threads. Call once, not during `run`.
    func shutdown() {
        stopping = true
        for h in 0..<helpers { start[h].signal(); done[h].wait() }
    }

    private func loop(_ h: Int) {
        while true {
            start[h].wait()
            if stopping { done[h].signal(); return }
            do { try job?(h + 1) } catch { errors[h] = error }
            done[h].signal()
        }
    }
}
