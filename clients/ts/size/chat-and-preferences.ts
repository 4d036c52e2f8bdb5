// What a browser app that talks to chat and preferences ships: measured by .ci/ts-client.sh.
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/assistd/chat/v1/chat_pb.js";
import { PreferencesService } from "../gen/assistd/preferences/v1/preferences_pb.js";
import { AssistdSession, describeError, watchPreferences } from "../src/index.js";

const session = new AssistdSession();
const transport = createGrpcWebTransport({ baseUrl: location.origin, interceptors: [session.interceptor] });
session.bindTransport(createGrpcWebTransport({ baseUrl: location.origin }));
export const chat = createClient(ChatService, transport);
export const preferences = createClient(PreferencesService, transport);
export { describeError, watchPreferences };
