// jsvectormap's map files register themselves on a global; provide it before they load.
import jsVectorMap from 'jsvectormap';

window.jsVectorMap = jsVectorMap;
export default jsVectorMap;
