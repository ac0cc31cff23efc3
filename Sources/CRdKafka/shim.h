// librdkafka, including the mock cluster API used by `streamrec broker`.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
