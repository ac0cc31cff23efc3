// Slow and idle clients. Hummingbird's `HTTP1Channel.Configuration.idleTimeout` closes a
// connection on which no request part arrives for that long (a keep-alive connection between
// requests, or one that connected and sent nothing). It cannot tell a client that never finishes
// its request apart from a slow one, so `RequestReadTimeoutHandler` adds two deadlines of its own:
//   - header: from the first byte of a request until its head is complete (partial or trickled
//     headers);
//   - body: from the head until the request's end (a declared Content-Length that never arrives,
//     or a body trickled a byte at a time).
// A request that is complete and being answered has no deadline here. A response that ends before
// its request's body was received (413 for a declared length over the limit) closes the
// connection, so the server never reads or waits for a body it has refused.
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// How long a client may take; see the comment at the top of this file.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// No request part for this long (between requests, or nothing sent): closed by Hummingbird.
    public var idle: Duration
    /// First byte of a request until its head is complete.
    public var header: Duration
    /// Head until the whole body has arrived.
    public var body: Duration
    /// On SIGTERM, requests still being received get at most this much longer, and graceful
    /// shutdown as a whole is escalated to cancellation after `shutdown`.
    public var shutdownGrace: Duration
    public var shutdown: Duration

    public init(idle: Duration = .seconds(60), header: Duration = .seconds(10), body: Duration = .seconds(30),
                shutdownGrace: Duration = .seconds(1), shutdown: Duration = .seconds(5)) {
        self.idle = idle
        self.header = header
        self.body = body
        self.shutdownGrace = shutdownGrace
        self.shutdown = shutdown
    }
}

/// Header and body deadlines of one connection (one instance per channel, used on its event loop only).
/// Sits after the HTTP decoder, so it sees request parts; `channelReadComplete` still arrives for
/// every read from the socket, including reads the decoder could not turn into a part yet, which
/// is how it notices the first bytes of a request head.
final class RequestReadTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    enum Phase: String {
        /// No request bytes pending (idle: Hummingbird's idle timeout applies).
        case waiting
        /// Bytes of a request head arrived, the head is not complete.
        case header
        /// The head arrived, the end of the request has not.
        case body
    }

    private let timeouts: ConnectionTimeouts
    private let onTimeout: @Sendable (Phase) -> Void
    private var phase = Phase.waiting
    /// Requests whose head arrived and whose response has not ended.
    private var unanswered = 0
    private var deadline: NIODeadline?
    private var timer: Scheduled<Void>?

    init(timeouts: ConnectionTimeouts, onTimeout: @escaping @Sendable (Phase) -> Void) {
        self.timeouts = timeouts
        self.onTimeout = onTimeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            arm(.body, at: .now() + TimeAmount(timeouts.body), context: context)
        case .body:
            break
        case .end:
            disarm(to: .waiting)
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Bytes that did not complete a head: a request has started. (Bytes pipelined behind a
        // request still being answered are left to the idle timeout.)
        if phase == .waiting && unanswered == 0 {
            arm(.header, at: .now() + TimeAmount(timeouts.header), context: context)
        }
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        unanswered = max(0, unanswered - 1)
        if unanswered == 0 && phase == .body {
            // Answered before its body arrived (refused up front): do not wait for or read it.
            disarm(to: .waiting)
            context.writeAndFlush(data, promise: promise)
            context.close(promise: nil)
        } else {
            context.write(data, promise: promise)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Graceful shutdown: Hummingbird closes idle connections and waits for requests in
        // progress; one still being received must not hold the shutdown up for its full timeout.
        if event is ChannelShouldQuiesceEvent, phase != .waiting {
            let soon = NIODeadline.now() + TimeAmount(timeouts.shutdownGrace)
            if let deadline, deadline > soon { arm(phase, at: soon, context: context) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm(to: .waiting)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm(to: .waiting)
        context.fireChannelInactive()
    }

    private func arm(_ phase: Phase, at deadline: NIODeadline, context: ChannelHandlerContext) {
        timer?.cancel()
        self.phase = phase
        self.deadline = deadline
        let loop = context.eventLoop.assumeIsolated()
        timer = loop.scheduleTask(deadline: deadline) { [self] in
            guard self.phase == phase else { return }
            self.onTimeout(phase)
            self.disarm(to: .waiting)
            context.close(promise: nil)
        }
    }

    private func disarm(to phase: Phase) {
        timer?.cancel()
        timer = nil
        deadline = nil
        self.phase = phase
    }
}
