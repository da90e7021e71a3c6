export default function Home() {
  return <p>Replicate webhooks are received at /api/webhooks/replicate.</p>;
}
