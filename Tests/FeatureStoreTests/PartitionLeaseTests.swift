@testable import FeatureStore
import Features
import Foundation
import Streaming
import Testing
import TestSupport

@Suite("partition leases and the fence")
struct FairShareTests {
    @Test("fair share: every partition has exactly one intended holder, shares differ by at most one")
    func shares() {
        for partitions in 0...17 {
            for members in 1...6 {
                let s = (0..<members).map { fairShare(partitions: partitions, members: members, index: $0) }
                #expect(s.reduce(0, +) == partitions, "P=\(partitions) M=\(members): \(s)")
                #expect((s.max() ?? 0) - (s.min() ?? 0) <= 1)
            }
        }
        #expect(fairShare(partitions: 4, members: 3, index: 0) == 2 && fairShare(partitions: 4, members: 3, index: 2) == 1)
        #expect(fairShare(partitions: 4, members: 3, index: 3) == 0)   // not a member
    }
}

@Suite("partition leases on a real redis-server", .serialized, .timeLimit(.minutes(2)))
struct PartitionLeaseTests {
    func unit(_ p: Int32, first: Int64, last: Int64, token: Int64?) -> CommitUnit {
        var u = CommitUnit(topic: "t", partition: p, firstOffset: first, lastOffset: last, shard: Int(p),
                           encodedBatch: nil, rows: 0, deadLetters: [DeadLetter(raw: [1], offset: first, reason: "bad_label", detail: "d")],
                           worker: "w")
        u.leaseToken = token
        return u
    }

    @Test("acquire, renew, release; a taken lease fences the old holder's commit: nothing of it is written")
    func fence() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let store = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: server.port))
        let lease = Duration.seconds(30)
        let a = try store.acquireLeases(topic: "t", worker: "A", candidates: [0, 1, 2], most: 2, lease: lease)
        #expect(a.map(\.partition) == [0, 1])
        let b = try store.acquireLeases(topic: "t", worker: "B", candidates: [0, 1, 2], most: 3, lease: lease)
        #expect(b.map(\.partition) == [2], "held leases are not taken")
        #expect(Set((a + b).map(\.token)).count == 3, "every acquisition gets its own token")

        // A commits with its token; a unit without the right token is refused and writes nothing.
        #expect(try store.commit(unit(0, first: 0, last: 9, token: a[0].token)) == .committed(streamId: nil))
        #expect(throws: FeatureStoreError.fenced(topic: "t", partition: 0, token: b[0].token, owner: "A")) {
            try store.commit(unit(0, first: 10, last: 19, token: b[0].token))
        }
        #expect(try store.readProgress(topic: "t", partition: 0) == 10)
        #expect(try store.redis.command(["XLEN", "sr:deadletter"]).integer == 1)

        // A's lease on 0 is released; B takes it: A's next unit is fenced, B continues from the progress.
        #expect(try store.releaseLeases(topic: "t", worker: "A", held: [a[0]], leaveGroup: false) == 1)
        let b0 = try #require(try store.acquireLeases(topic: "t", worker: "B", candidates: [0], most: 1, lease: lease).first)
        #expect(b0.token > a[0].token)
        #expect(throws: FeatureStoreError.fenced(topic: "t", partition: 0, token: a[0].token, owner: "B")) {
            try store.commit(unit(0, first: 10, last: 19, token: a[0].token))
        }
        #expect(try store.commit(unit(0, first: 10, last: 19, token: b0.token)) == .committed(streamId: nil))
        #expect(try store.readProgress(topic: "t", partition: 0) == 20)
        #expect(try store.redis.command(["XLEN", "sr:deadletter"]).integer == 2)

        // Renewal reports the group and what was lost; the holders are visible to status.
        let renewal = try store.renewLeases(topic: "t", worker: "A", held: a, lease: lease)
        #expect(renewal.lost == [0] && renewal.members == ["A"])
        #expect(try store.renewLeases(topic: "t", worker: "B", held: b + [b0], lease: lease).members == ["A", "B"])
        let holders = try store.leaseHolders(topic: "t", partitions: [0, 1, 2, 3])
        #expect(holders[0]?.owner == "B" && holders[1]?.owner == "A" && holders[2]?.owner == "B" && holders[3] == nil)
        #expect((holders[1]?.remainingMs ?? 0) > 20_000)
        // Leaving the group gives everything back at once.
        try store.releaseLeases(topic: "t", worker: "B", held: b + [b0], leaveGroup: true)
        #expect(try store.renewLeases(topic: "t", worker: "A", held: [a[1]], lease: lease).members == ["A"])
        #expect(try store.leaseHolders(topic: "t", partitions: [0, 2]).isEmpty)
    }

    @Test("an unrenewed lease expires (Redis's clock): the holder learns it lost it and another worker takes it")
    func expiry() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let store = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: server.port))
        let a = try store.acquireLeases(topic: "t", worker: "A", candidates: [5], most: 1, lease: .milliseconds(300))
        #expect(a.count == 1)
        #expect(try store.acquireLeases(topic: "t", worker: "B", candidates: [5], most: 1, lease: .seconds(30)).isEmpty)
        var taken: [PartitionLease] = []
        #expect(try poll(for: 10) {
            taken = try store.acquireLeases(topic: "t", worker: "B", candidates: [5], most: 1, lease: .seconds(30))
            return !taken.isEmpty
        })
        #expect(try store.renewLeases(topic: "t", worker: "A", held: a, lease: .seconds(30)).lost == [5])
        // The same worker id (a restart with a stable --worker-id) takes its own lease back, with a new token.
        let again = try store.acquireLeases(topic: "t", worker: "B", candidates: [5], most: 1, lease: .seconds(30))
        #expect(again.count == 1 && again[0].token > taken[0].token)
    }
}
