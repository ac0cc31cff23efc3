// hiredis: synchronous Redis client.
#include <hiredis.h>
