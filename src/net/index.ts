/**
 * Network layer: WebSocket transport, frame codec and handshake (see DESIGN.md "Cluster").
 *
 * `NetServer` accepts on the node's one port, `dial()` connects to another node; both hand
 * out `Connection`s that carry requests, notifications and raw data frames both ways.
 */
export { NetServer, type NetServerOptions, type NetServerStats } from './server.js';
export { dial, type DialOptions } from './client.js';
export {
  Connection,
  type Body,
  type ConnectionLimits,
  type ConnectionStats,
  type Handler,
  type HandlerLookup,
  type NetIdentity,
  type NetLog,
  type RemoteRole,
} from './connection.js';
export { PreparedFrame, prepareFrame, FRAME_HEADER_BYTES, METHOD_BYTES_MAX, PROTOCOL_VERSION } from './frames.js';
export { CLOSE_CODE_BY_ERROR, errorFromClose } from './close-codes.js';
