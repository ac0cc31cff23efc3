// Streaming/OffThreadCalls: one helper thread for client calls that can block past their own
// timeout, so the thread that must notice SIGTERM never makes them itself.
//
// Why this exists
//   librdkafka 2.0.2's `rd_kafka_query_watermark_offsets` (and other request/response calls) can
//   block far beyond `timeout_ms` while the broker is unreachable (upstream fixed a hang of this
//   kind in 2.3.0). A feature worker that called it on its main thread stopped heartbeating,
//   never reported the outage and ignored SIGTERM. Here the call runs on the helper; the caller
//   waits with its own deadline, checking its stop condition, and gives up when either says so.
//
// Limits
//   One call at a time: while an earlier call is still stuck, later ones wait for it within their
//   own deadline (and give up as "timed out"). A call given up on still finishes on the helper;
//   its result is dropped. The helper holds what the call captured (e.g. the Kafka handle) until
//   then, so a handle is never destroyed under a call that is still inside librdkafka.

import Foundation

public final class OffThreadCalls: @unchecked Sendable {
    private let condition = NSCondition()
    private var job: (@Sendable () -> Void)? = nil
    private var runningSince: ContinuousClock.Instant? = nil
    private var closed = false

    public init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while job == nil && !closed { condition.wait() }
            guard let body = job else { condition.unlock(); return }
            condition.unlock()
            body()
            condition.lock()
            job = nil
            runningSince = nil
            condition.broadcast()
            condition.unlock()
        }
    }

    /// How long the current call has been running (nil when idle).
    public var busyFor: Duration? {
        condition.lock(); defer { condition.unlock() }
        return runningSince.map { ContinuousClock.now - $0 }
    }

    /// Starts `body` if the helper is idle and returns true; returns false (and does nothing) when
    /// an earlier call is still running.
    @discardableResult
    public func post(_ body: @escaping @Sendable () -> Void) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard job == nil, !closed else { return false }
        job = body
        runningSince = .now
        condition.broadcast()
        return true
    }

    /// Runs `body` on the helper and waits for its result at most `timeout`, asking `stopping`
    /// every 50 ms. Returns nil when the deadline passed or `stopping` said so first.
    public func call<T: Sendable>(timeout: Duration, stopping: () -> Bool = { false },
                                  _ body: @escaping @Sendable () -> T) -> T? {
        let deadline = ContinuousClock.now + timeout
        let box = ResultBox<T>()
        // Wait for the helper to be free (an earlier call may still be stuck).
        while !post({ box.set(body()) }) {
            if stopping() || ContinuousClock.now >= deadline { return nil }
            condition.lock(); _ = condition.wait(until: Date().addingTimeInterval(0.05)); condition.unlock()
        }
        while true {
            if let value = box.value { return value }
            if stopping() || ContinuousClock.now >= deadline { return nil }
            box.wait(upTo: 0.05)
        }
    }

    /// Ends the helper once it is idle (a stuck call keeps it until the call returns).
    public func close() {
        condition.lock(); defer { condition.unlock() }
        closed = true
        condition.broadcast()
    }
}

/// A value handed from the helper thread to a waiter.
private final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var stored: T? = nil
    func set(_ v: T) { condition.lock(); stored = v; condition.broadcast(); condition.unlock() }
    var value: T? { condition.lock(); defer { condition.unlock() }; return stored }
    func wait(upTo seconds: Double) {
        condition.lock()
        if stored == nil { _ = condition.wait(until: Date().addingTimeInterval(seconds)) }
        condition.unlock()
    }
}
