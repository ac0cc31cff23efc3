// How serve and the dashboard run their Hummingbird application: in a service group that shuts
// down gracefully (in-flight requests finish, bounded by `maximumGrace`) when `waitForShutdown`
// returns. That call blocks (the CLI waits for SIGINT/SIGTERM through ShutdownSignals), so it
// runs on a thread of its own, never on the concurrency pool.
import Foundation
import Hummingbird
import ServiceLifecycle

public func runUntilShutdown(_ app: some ApplicationProtocol & Service, maximumGrace: Duration, threadName: String,
                             waitForShutdown: @escaping @Sendable () -> Void) async throws {
    var configuration = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [], logger: app.logger)
    configuration.maximumGracefulShutdownDuration = maximumGrace
    let group = ServiceGroup(configuration: configuration)
    let waiter = Thread {
        waitForShutdown()
        Task { await group.triggerGracefulShutdown() }
    }
    waiter.name = threadName
    waiter.start()
    try await group.run()
}
