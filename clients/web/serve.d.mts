export interface StaticServer {
  url: string;
  close(): Promise<void>;
}
export function startStaticServer(options?: { port?: number; host?: string; apiUrl?: string; dir?: string }): Promise<StaticServer>;
