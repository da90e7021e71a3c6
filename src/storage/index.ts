export async function createStorage(..._a: unknown[]): Promise<never> { throw new Error("todo"); }
