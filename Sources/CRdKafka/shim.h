// librdkafka, including the mock cluster API used by `streamrec broker`.
// Why this shim exists: the Swift module map needs one umbrella header that pulls in both the
// client API and the mock-cluster API (rdkafka_mock.h is not included by rdkafka.h).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
