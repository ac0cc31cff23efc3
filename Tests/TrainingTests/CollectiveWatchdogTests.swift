import Foundation
import Synchronization
import Testing
import TestSupport
@testable import Training

@Suite("collective watchdog")
struct CollectiveWatchdogTests {
    final class Fired: @unchecked Sendable {
        let lock = NSLock()
        var lines: [String] = []
        func add(_ l: String) { lock.withLock { lines.append(l) } }
        var all: [String] { lock.withLock { lines } }
    }

    @Test("a collective that never completes is reported (naming the rank); quick ones and time between them are not")
    func fires() throws {
        let fired = Fired()
        let dog = CollectiveWatchdog(timeout: .milliseconds(600), onTimeout: { fired.add($0) })
        defer { dog.stop() }
        for _ in 0..<5 { dog.watch(as: "rank 0/2") { Thread.sleep(forTimeInterval: 0.05) } }
        Thread.sleep(forTimeInterval: 1.0)   // outside any collective: local work, never a timeout
        #expect(fired.all.isEmpty)
        // A peer that stops answering: the watched call blocks; the watchdog reports it.
        let stuck = Atomic<Bool>(true)
        let t = Thread { dog.watch(as: "rank 1/2") { while stuck.load(ordering: .relaxed) { Thread.sleep(forTimeInterval: 0.02) } } }
        t.start()
        #expect(poll(for: 10) { !fired.all.isEmpty })
        stuck.store(false, ordering: .relaxed)
        #expect(fired.all.first?.contains("Error (rank 1/2): no answer from the other ranks") == true)
    }
}
