package dist

import "fmt"

// The "nccl" kind is reserved for GPU collectives. The intended shape, for
// whoever adds it:
//
//   - It lives in a subpackage (dist/nccl) that opens libnccl.so.2 through
//     purego and calls Register("nccl", ...) from its init function, so
//     package dist stays free of GPU code and a binary that does not import
//     it still builds and runs.
//   - It bootstraps over MPI: rank 0 calls ncclGetUniqueId and the 128-byte
//     id reaches every rank through the MPI world Comm's Broadcast; then
//     ncclCommInitRank (the id passed by value). Split maps to
//     ncclCommSplit.
//   - The Comm methods here take host memory; an NCCL Comm would satisfy
//     them by staging through device buffers and add a device-pointer
//     interface (stream-ordered AllReduce, ReduceScatter, AllGather,
//     Send/Recv for all-to-all) for the trainer's hot path.
//
// Until then Open("nccl") fails with ErrNotImplemented.
func openNCCLUnavailable(Options) (Comm, error) {
	return nil, fmt.Errorf("dist: kind \"nccl\": %w in this build yet (GPU collectives will register here; use \"mpi\" for now)", ErrNotImplemented)
}
