// uniapp's own Vite tool chain: `uni build -p h5` (and -p app, -p mp-weixin from the same source).
import { defineConfig } from "vite";
import uni from "@dcloudio/vite-plugin-uni";

export default defineConfig({
  plugins: [uni()],
});
